// Package browser drives a headless Chromium (Debian's package) through
// the DevTools protocol over a pipe (--remote-debugging-pipe): open a page,
// evaluate JavaScript in it, take a screenshot. Tests use it to check the
// status page as a browser draws it, live, including the redraws that
// server-sent events cause (which Chromium's --dump-dom cannot wait for:
// its virtual time never advances while a stream is open).
//
// Contract: Start runs Chromium, optionally inside a lab namespace, in its
// own process group with a fresh profile directory; Close ends the whole
// group and removes the profile, whatever state Chromium is in. Chromium
// makes no connection of its own (background networking, updates, sync
// and QUIC are off).
package browser

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Binary is Debian's Chromium launcher.
const Binary = "chromium"

// Flags are the flags every headless run needs on these machines: as
// root (no sandbox), without a GPU, and without Chromium's own traffic,
// which a closed network refuses.
var Flags = []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync",
	"--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio"}

// Available reports why Chromium cannot run here, or nil.
func Available() error {
	if _, err := exec.LookPath(Binary); err != nil {
		return fmt.Errorf("browser: %s is not installed (Debian package chromium): %w", Binary, err)
	}
	return nil
}

// Browser is a running Chromium with one page.
type Browser struct {
	cmd     *exec.Cmd
	profile string
	w       io.WriteCloser // commands: Chromium's fd 3
	r       io.ReadCloser  // answers and events: Chromium's fd 4
	session string

	mu      sync.Mutex
	nextID  int
	pending map[int]chan reply
	readErr error
	done    chan struct{}
	stderr  *tailBuffer
}

type reply struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// Start runs Chromium; prefix runs it through another command, such as
// ["ip", "netns", "exec", "shoal-client"]. width and height size the
// window, and so the screenshots.
func Start(prefix []string, width, height int) (*Browser, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	profile, err := os.MkdirTemp("", "shoal-chromium-")
	if err != nil {
		return nil, err
	}
	args := append(append([]string{}, prefix...), Binary)
	args = append(args, Flags...)
	args = append(args, "--user-data-dir="+profile, "--remote-debugging-pipe",
		fmt.Sprintf("--window-size=%d,%d", width, height), "about:blank")
	cmdR, cmdW, err := os.Pipe() // we write commands, Chromium reads fd 3
	if err != nil {
		os.RemoveAll(profile)
		return nil, err
	}
	outR, outW, err := os.Pipe() // Chromium writes fd 4, we read
	if err != nil {
		cmdR.Close()
		cmdW.Close()
		os.RemoveAll(profile)
		return nil, err
	}
	b := &Browser{profile: profile, w: cmdW, r: outR, pending: map[int]chan reply{}, done: make(chan struct{}),
		stderr: &tailBuffer{max: 8 << 10}}
	b.cmd = exec.Command(args[0], args[1:]...)
	b.cmd.ExtraFiles = []*os.File{cmdR, outW}
	b.cmd.Stderr = b.stderr
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := b.cmd.Start(); err != nil {
		cmdR.Close()
		outW.Close()
		cmdW.Close()
		outR.Close()
		os.RemoveAll(profile)
		return nil, fmt.Errorf("browser: starting %s: %w", strings.Join(args, " "), err)
	}
	cmdR.Close()
	outW.Close()
	go b.read()
	return b, nil
}

// read dispatches Chromium's messages (NUL-terminated JSON) to waiting
// calls; events are dropped.
func (b *Browser) read() {
	br := bufio.NewReaderSize(b.r, 1<<20)
	var err error
	for {
		var msg []byte
		msg, err = br.ReadBytes(0)
		if err != nil {
			break
		}
		var m struct {
			ID int `json:"id"`
			reply
		}
		if json.Unmarshal(msg[:len(msg)-1], &m) != nil || m.ID == 0 {
			continue
		}
		b.mu.Lock()
		ch := b.pending[m.ID]
		delete(b.pending, m.ID)
		b.mu.Unlock()
		if ch != nil {
			ch <- m.reply
		}
	}
	b.mu.Lock()
	b.readErr = fmt.Errorf("browser: Chromium closed its pipe (%v); its stderr ends:\n%s", err, b.stderr.String())
	b.mu.Unlock()
	close(b.done)
}

// Call sends one DevTools command (to the page once Open attached one)
// and decodes its result into result (nil: ignore it).
func (b *Browser) Call(ctx context.Context, method string, params, result any) error {
	return b.call(ctx, b.session, method, params, result)
}

func (b *Browser) call(ctx context.Context, session, method string, params, result any) error {
	b.mu.Lock()
	if b.readErr != nil {
		err := b.readErr
		b.mu.Unlock()
		return err
	}
	b.nextID++
	id := b.nextID
	ch := make(chan reply, 1)
	b.pending[id] = ch
	b.mu.Unlock()
	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if session != "" {
		msg["sessionId"] = session
	}
	raw, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	if _, err := b.w.Write(append(raw, 0)); err != nil {
		return fmt.Errorf("browser: %s: %w", method, err)
	}
	select {
	case r := <-ch:
		if r.Error != nil {
			return fmt.Errorf("browser: %s: %s (%d)", method, r.Error.Message, r.Error.Code)
		}
		if result != nil {
			return json.Unmarshal(r.Result, result)
		}
		return nil
	case <-b.done:
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.readErr
	case <-ctx.Done():
		b.mu.Lock()
		delete(b.pending, id)
		b.mu.Unlock()
		return fmt.Errorf("browser: %s: %w", method, ctx.Err())
	}
}

// Open opens url in a new page and attaches to it; later calls go to it.
func (b *Browser) Open(ctx context.Context, url string) error {
	var t struct {
		TargetID string `json:"targetId"`
	}
	if err := b.call(ctx, "", "Target.createTarget", map[string]any{"url": url}, &t); err != nil {
		return err
	}
	var s struct {
		SessionID string `json:"sessionId"`
	}
	if err := b.call(ctx, "", "Target.attachToTarget", map[string]any{"targetId": t.TargetID, "flatten": true}, &s); err != nil {
		return err
	}
	b.session = s.SessionID
	return nil
}

// Eval evaluates a JavaScript expression in the page and decodes its
// value (returned by value, so it must be JSON) into v.
func (b *Browser) Eval(ctx context.Context, expr string, v any) error {
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		Exception *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	if err := b.Call(ctx, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &r); err != nil {
		return err
	}
	if r.Exception != nil {
		return fmt.Errorf("browser: evaluating %q: %s %s", expr, r.Exception.Text, r.Exception.Exception.Description)
	}
	if v == nil {
		return nil
	}
	if len(r.Result.Value) == 0 {
		return fmt.Errorf("browser: %q has no JSON value", expr)
	}
	return json.Unmarshal(r.Result.Value, v)
}

// WaitFor evaluates expr (a JavaScript boolean) every interval until it
// is true or ctx ends; the error then carries the last failure.
func (b *Browser) WaitFor(ctx context.Context, expr string, interval time.Duration) error {
	var last error
	for {
		var ok bool
		err := b.Eval(ctx, expr, &ok)
		if err == nil && ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("browser: waiting for %s: %w (last error: %v)", expr, ctx.Err(), last)
			}
			return fmt.Errorf("browser: waiting for %s: %w", expr, ctx.Err())
		case <-time.After(interval):
		}
	}
}

// Screenshot writes a PNG of the whole page to path.
func (b *Browser) Screenshot(ctx context.Context, path string) error {
	var r struct {
		Data string `json:"data"`
	}
	if err := b.Call(ctx, "Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true}, &r); err != nil {
		return err
	}
	png, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		return fmt.Errorf("browser: screenshot: %w", err)
	}
	return os.WriteFile(path, png, 0o644)
}

// DOM returns the page's HTML as it is now.
func (b *Browser) DOM(ctx context.Context) (string, error) {
	var s string
	err := b.Eval(ctx, "document.documentElement.outerHTML", &s)
	return s, err
}

// Close asks Chromium to quit, then ends its process group and removes
// the profile. It is safe to call more than once.
func (b *Browser) Close() error {
	if b.cmd == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	b.call(ctx, "", "Browser.close", nil, nil)
	cancel()
	b.w.Close()
	exited := make(chan struct{})
	go func() { b.cmd.Wait(); close(exited) }()
	select {
	case <-exited:
	case <-time.After(3 * time.Second):
	}
	// The renderer, GPU and network processes are in the same group.
	syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
	<-exited
	b.r.Close()
	<-b.done
	b.cmd = nil
	return os.RemoveAll(b.profile)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// DumpDOM loads url in a fresh Chromium (through prefix, as Start) and
// returns the DOM as serialised at the load event (--dump-dom): what a
// page draws before then, and nothing it draws later.
func DumpDOM(ctx context.Context, prefix []string, url string) (string, error) {
	if err := Available(); err != nil {
		return "", err
	}
	profile, err := os.MkdirTemp("", "shoal-chromium-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(profile)
	args := append(append([]string{}, prefix...), Binary)
	args = append(args, Flags...)
	args = append(args, "--user-data-dir="+profile, "--dump-dom", url)
	cmd := exec.Command(args[0], args[1:]...)
	var out strings.Builder
	errb := &tailBuffer{max: 4 << 10}
	cmd.Stdout, cmd.Stderr = &out, errb
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("browser: %s: %w", strings.Join(args, " "), err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // helpers left behind
	if ctx.Err() != nil {
		<-done
	}
	if err != nil || out.Len() == 0 {
		return "", fmt.Errorf("browser: --dump-dom %s: %v, %d bytes; stderr ends:\n%s", url, err, out.Len(), errb.String())
	}
	return out.String(), nil
}
