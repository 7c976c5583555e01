// Package testenv starts the real parts the tests run against: the test
// issuer (tests/issuer, a real OpenID Connect server on loopback) and the
// real authd binary (AUTHD_BIN, default <repo>/target/debug/authd). Nothing
// here skips: a missing part is a failure that says how to get it.
package testenv

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	// Audience is the API identifier the test issuer puts in aud.
	Audience = "https://api.authd.test"
	// ClientID and ClientSecret are the test issuer's one OAuth client.
	ClientID     = "authd-test-client"
	ClientSecret = "authd-test-secret"
	// RedirectURI is where the test "app" says the issuer redirects.
	RedirectURI = "http://127.0.0.1:1/callback"
	// SealKey is a 32-byte key (base64) for sealing secrets in tests.
	SealKey = "dGVzdC1rZXktMzItYnl0ZXMtZm9yLWF1dGhkLXRlc3Q="
)

// Root is the repository root.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "../../../.."))
}

var nextPort atomic.Uint32

// FreePort is a free loopback port for a process that binds it later. It
// comes from below the kernel's ephemeral range (a port from that range can
// be taken by any outgoing connection between the check and the bind),
// starting at an offset derived from the pid, each checked by binding it.
func FreePort() (int, error) {
	ephemeralStart := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				ephemeralStart = n
			}
		}
	}
	const lowest = 10_000
	if ephemeralStart <= lowest+1000 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port, nil
	}
	span := uint32(ephemeralStart - lowest)
	offset := uint32(os.Getpid()) * 7919 % span
	for range span {
		port := lowest + int((offset+nextPort.Add(1))%span)
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			l.Close()
			return port, nil
		}
	}
	return 0, errors.New("no free loopback port below the ephemeral range")
}

// WaitForPort waits until addr accepts connections, polling, at most within.
func WaitForPort(addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			conn.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not accept connections within %v: %w", addr, within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// === the issuer ===

// Issuer is tests/issuer/issuer.js running on loopback.
type Issuer struct {
	// URL is its iss, with the trailing slash.
	URL string
	cmd *exec.Cmd
}

// StartIssuer starts the issuer on an ephemeral port and waits for READY.
func StartIssuer() (*Issuer, error) {
	dir := filepath.Join(Root(), "tests/issuer")
	if _, err := os.Stat(filepath.Join(dir, "node_modules/oauth2-mock-server")); err != nil {
		return nil, errors.New("tests/issuer has no node_modules: run `npm ci --prefix tests/issuer` (run-tests does)")
	}
	cmd := exec.Command("node", filepath.Join(dir, "issuer.js"), "--port", "0", "--audience", Audience)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting node tests/issuer/issuer.js: %w", err)
	}
	ready := make(chan string, 1)
	go func() {
		scanner := bufio.NewScanner(stdout)
		for scanner.Scan() {
			if url, ok := strings.CutPrefix(scanner.Text(), "READY "); ok {
				ready <- strings.TrimSpace(url)
			}
		}
		close(ready)
	}()
	select {
	case url, ok := <-ready:
		if !ok {
			return nil, errors.New("the issuer exited before READY")
		}
		return &Issuer{URL: url, cmd: cmd}, nil
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		return nil, errors.New("the issuer did not print READY within 20 s")
	}
}

// Stop ends the issuer.
func (i *Issuer) Stop() {
	_ = i.cmd.Process.Signal(syscall.SIGTERM)
	_ = i.cmd.Wait()
}

// Token mints an access token with client_credentials and the issuer's
// knobs in extra (scope, permissions, sub, sid, expires_in, claims, …).
func (i *Issuer) Token(extra map[string]string) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {ClientID}, "client_secret": {ClientSecret}}
	for k, v := range extra {
		form.Set(k, v)
	}
	res, err := http.PostForm(i.URL+"oauth/token", form)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		return "", err
	}
	token, ok := body["access_token"].(string)
	if res.StatusCode != http.StatusOK || !ok {
		return "", fmt.Errorf("token endpoint answered %s: %v", res.Status, body)
	}
	return token, nil
}

// Control POSTs body to /__control/what and decodes the answer.
func (i *Issuer) Control(what string, body any) (map[string]any, error) {
	b, _ := json.Marshal(body)
	res, err := http.Post(i.URL+"__control/"+what, "application/json", bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	text, _ := io.ReadAll(res.Body)
	if res.StatusCode >= 300 {
		return nil, fmt.Errorf("control %s answered %s: %s", what, res.Status, text)
	}
	out := map[string]any{}
	if len(text) > 0 {
		_ = json.Unmarshal(text, &out)
	}
	return out, nil
}

// Authorize logs user in at /authorize with PKCE (the issuer redirects at
// once); it returns the code and its verifier.
func (i *Issuer) Authorize(user, nonce string) (code, verifier string, err error) {
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	verifier = base64.RawURLEncoding.EncodeToString(raw)
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{
		"response_type": {"code"}, "client_id": {ClientID}, "redirect_uri": {RedirectURI},
		"scope": {"openid profile email offline_access"}, "audience": {Audience}, "state": {"st"},
		"nonce": {nonce}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])},
		"code_challenge_method": {"S256"}, "login_hint": {user},
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Get(i.URL + "authorize?" + q.Encode())
	if err != nil {
		return "", "", err
	}
	res.Body.Close()
	location, err := url.Parse(res.Header.Get("Location"))
	if err != nil {
		return "", "", err
	}
	code = location.Query().Get("code")
	if code == "" {
		return "", "", fmt.Errorf("no code in the redirect %q", res.Header.Get("Location"))
	}
	return code, verifier, nil
}

// ConfigEntry is the [[issuers]] entry for this issuer.
func (i *Issuer) ConfigEntry() string {
	return fmt.Sprintf("[[issuers]]\nissuer = %q\naudiences = [%q]\nalgorithms = [\"RS256\"]\n", i.URL, Audience)
}

// SessionsConfig is a configuration with sessions: this issuer with authd's
// OAuth client, a sealing key and fast refetches, plus extra.
func (i *Issuer) SessionsConfig(extra string) string {
	return i.ConfigEntry() + fmt.Sprintf("client_id = %q\nclient_secret = { value = %q }\nrequest_timeout_ms = 1500\n"+
		"[[secrets.keys]]\nid = \"k1\"\nvalue = %q\n[jwks]\nmin_refetch_interval_seconds = 0\n%s",
		ClientID, ClientSecret, SealKey, extra)
}

// === authd ===

// Authd is the real authd binary serving on loopback with the embedded
// store in a temporary directory.
type Authd struct {
	// Addr is host:port.
	Addr   string
	dir    string
	config string
	cmd    *exec.Cmd
	log    *os.File
}

// Binary is the authd binary the tests run.
func Binary() (string, error) {
	bin := os.Getenv("AUTHD_BIN")
	if bin == "" {
		bin = filepath.Join(Root(), "target/debug/authd")
	}
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("no authd binary at %s: build it (cargo build -p authd) or set AUTHD_BIN", bin)
	}
	return bin, nil
}

// StartAuthd starts authd in dir (a temporary directory the caller removes)
// with toml (issuers, limits, …; without [server] listen or [store], which
// this sets; serverExtra goes into [server], e.g. a [server.tls] table).
func StartAuthd(dir, toml, serverExtra string) (*Authd, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	a := &Authd{Addr: fmt.Sprintf("127.0.0.1:%d", port), dir: dir, config: filepath.Join(dir, "authd.toml")}
	body := fmt.Sprintf("[server]\nlisten = %q\n%s\n[store]\npath = %q\n%s", a.Addr, serverExtra, filepath.Join(dir, "data"), toml)
	if err := os.WriteFile(a.config, []byte(body), 0o600); err != nil {
		return nil, err
	}
	return a, a.Start()
}

// Start starts (or starts again, same port and store) the process and
// waits until it accepts connections.
func (a *Authd) Start() error {
	bin, err := Binary()
	if err != nil {
		return err
	}
	log, err := os.OpenFile(filepath.Join(a.dir, "authd.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "serve", "--config", a.config)
	cmd.Env = append(os.Environ(), "RUST_LOG=warn")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return err
	}
	a.cmd, a.log = cmd, log
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	ready := make(chan error, 1)
	go func() { ready <- WaitForPort(a.Addr, 30*time.Second) }()
	select {
	case err := <-ready:
		if err != nil {
			return fmt.Errorf("%w\n%s", err, a.Log())
		}
		go func() { <-exited }()
		return nil
	case err := <-exited:
		return fmt.Errorf("authd exited at start (%v):\n%s", err, a.Log())
	}
}

// Signal sends sig (syscall.SIGSTOP, SIGCONT, …) to the process.
func (a *Authd) Signal(sig syscall.Signal) error { return a.cmd.Process.Signal(sig) }

// Pause sends SIGSTOP and waits until every thread of authd is stopped:
// the signal is delivered asynchronously, and a thread scheduled before the
// one that takes it could still answer a call made right after kill().
func (a *Authd) Pause() error {
	if err := a.Signal(syscall.SIGSTOP); err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Second)
	for !a.stopped() {
		if time.Now().After(deadline) {
			return errors.New("authd did not stop within 5 s of SIGSTOP")
		}
		time.Sleep(2 * time.Millisecond)
	}
	return nil
}

// stopped reports whether every thread's state in /proc is T (stopped).
func (a *Authd) stopped() bool {
	dir := fmt.Sprintf("/proc/%d/task", a.cmd.Process.Pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, task := range tasks {
		stat, err := os.ReadFile(filepath.Join(dir, task.Name(), "stat"))
		if err != nil {
			continue // a thread that has just ended
		}
		i := bytes.LastIndex(stat, []byte(") "))
		if i < 0 || i+2 >= len(stat) || stat[i+2] != 'T' {
			return false
		}
	}
	return true
}

// Kill ends the process and waits until its port is free again.
func (a *Authd) Kill() {
	_ = a.cmd.Process.Signal(syscall.SIGCONT)
	_ = a.cmd.Process.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if err := a.cmd.Process.Signal(syscall.Signal(0)); err != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	a.log.Close()
}

// Log is everything authd logged so far.
func (a *Authd) Log() string {
	b, _ := os.ReadFile(filepath.Join(a.dir, "authd.log"))
	return string(b)
}
