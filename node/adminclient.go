package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// AdminPost sends body as JSON to path on a node's admin socket and
// decodes the JSON answer into v.
func AdminPost(socket, path string, body, v any) error {
	return adminDo(socket, http.MethodPost, path, body, v)
}

// AdminGet fetches path (into a *[]byte as is, else decoded as JSON) (e.g. "/v1/stats") from a node's admin socket and
// decodes the JSON answer into v.
func AdminGet(socket, path string, v any) error {
	return adminDo(socket, http.MethodGet, path, nil, v)
}

func adminDo(socket, method, path string, body, v any) error {
	c := &http.Client{
		Timeout: 5 * time.Second,
		// One request per connection: a transport per call that kept its
		// connection alive would leave a descriptor open on both sides.
		Transport: &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}},
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://shoal"+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("admin %s: %w", socket, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("admin %s%s: %w", socket, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("admin %s%s: %s: %s", socket, path, resp.Status, bytes.TrimSpace(raw))
	}
	if b, ok := v.(*[]byte); ok {
		*b = raw
		return nil
	}
	return json.Unmarshal(raw, v)
}
