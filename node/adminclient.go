package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// AdminGet fetches path (e.g. "/v1/stats") from a node's admin socket and
// decodes the JSON answer into v.
func AdminGet(socket, path string, v any) error {
	c := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}},
	}
	resp, err := c.Get("http://shoal" + path)
	if err != nil {
		return fmt.Errorf("admin %s: %w", socket, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("admin %s%s: %w", socket, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("admin %s%s: %s: %s", socket, path, resp.Status, body)
	}
	return json.Unmarshal(body, v)
}
