package api

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

// Post sends body as JSON to path on a node's admin socket and decodes the
// JSON answer into v.
func Post(socket, path string, body, v any) error {
	return adminDo(socket, http.MethodPost, path, body, v)
}

// Get fetches path (PathStats, say) from a node's admin socket into v: a
// *[]byte receives the body as it is (for /metrics), anything else is
// decoded from JSON. A status other than 200 is an error carrying the
// server's message.
func Get(socket, path string, v any) error {
	return adminDo(socket, http.MethodGet, path, nil, v)
}

// PostStream sends body as it is (a file being published) to path on a
// node's admin socket, bounded by timeout, and decodes the JSON answer into
// v.
func PostStream(socket, path string, body io.Reader, timeout time.Duration, v any) error {
	return adminRaw(socket, http.MethodPost, path, body, "application/octet-stream", timeout, v)
}

// StatusError is an answer other than 200: the node refused the request
// (4xx: the request is at fault, the message names the problem) or failed
// (5xx).
type StatusError struct {
	Code    int
	Message string
	What    string // socket and path
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("admin %s: %d %s: %s", e.What, e.Code, http.StatusText(e.Code), e.Message)
}

func adminDo(socket, method, path string, body, v any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	return adminRaw(socket, method, path, rd, "application/json", 5*time.Second, v)
}

func adminRaw(socket, method, path string, rd io.Reader, ctype string, timeout time.Duration, v any) error {
	c := &http.Client{
		Timeout: timeout,
		// One request per connection: a transport per call that kept its
		// connection alive would leave a descriptor open on both sides.
		Transport: &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}},
	}
	req, err := http.NewRequest(method, "http://shoal"+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", ctype)
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
		return &StatusError{Code: resp.StatusCode, Message: string(bytes.TrimSpace(raw)), What: socket + path}
	}
	if b, ok := v.(*[]byte); ok {
		*b = raw
		return nil
	}
	return json.Unmarshal(raw, v)
}
