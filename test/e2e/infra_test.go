package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/golang-jwt/jwt/v5"
)

// repoRoot is the module root, two levels above this file.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// buildBinary builds cmd/tenantgate into dir.
func buildBinary(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "tenantgate")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/tenantgate")
	cmd.Dir = repoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// handedOut are the addresses freeAddr returned, so that it never returns one twice.
var handedOut sync.Map

// freeAddr returns a 127.0.0.1 address with a port that was free a moment ago and that no other
// part of this test was given.
func freeAddr(t *testing.T) string {
	t.Helper()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		if _, taken := handedOut.LoadOrStore(addr, true); !taken {
			return addr
		}
	}
}

// process is one started program with its output in a log file.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startProcess(t *testing.T, name, logDir string, env []string, bin string, args ...string) *process {
	t.Helper()
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = logDir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("--- last lines of %s ---\n%s", name, p.tail(40))
		}
	})
	return p
}

// stop signals the process and waits for it (SIGKILL after 10s).
func (p *process) stop(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *process) tail(n int) string {
	data, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// errExited: the process ended before it was ready.
var errExited = errors.New("exited before it was ready")

// waitReady polls the admin /readyz of a tenantgate process until it answers 200.
func waitReady(p *process, adminAddr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		resp, err := http.Get("http://" + adminAddr + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%d %s", resp.StatusCode, bytes.TrimSpace(body))
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s %w:\n%s", p.name, errExited, p.tail(40))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %v\n%s", p.name, within, err, p.tail(40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// redisServer is a redis-server of this test's own, so that it can be killed and restarted.
type redisServer struct {
	t    *testing.T
	addr string
	dir  string
	p    *process
}

func startRedis(t *testing.T, dir string) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		msg := "redis-server not found: the end-to-end test kills a Redis of its own"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip("SKIPPING end-to-end test: " + msg)
	}
	r := &redisServer{t: t, addr: freeAddr(t), dir: dir}
	r.start(bin)
	return r
}

func (r *redisServer) start(bin string) {
	_, port, _ := net.SplitHostPort(r.addr)
	r.p = startProcess(r.t, "redis-"+fmt.Sprint(time.Now().UnixNano()), r.dir, nil, bin,
		"--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no", "--dir", r.dir)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", r.addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("redis-server on %s did not start: %v\n%s", r.addr, err, r.p.tail(20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill ends Redis abruptly, as a crash would.
func (r *redisServer) kill() { r.p.stop(syscall.SIGKILL) }

func (r *redisServer) restart() {
	bin, _ := exec.LookPath("redis-server")
	r.start(bin)
}

// tcpProxy forwards connections to target and can be cut (every connection closed, new ones
// refused) and restored on the same address: a network partition between the sidecars and Postgres.
type tcpProxy struct {
	addr, target string
	mu           sync.Mutex
	lis          net.Listener
	conns        map[net.Conn]struct{}
	wg           sync.WaitGroup
}

func startProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	p := &tcpProxy{addr: freeAddr(t), target: target, conns: map[net.Conn]struct{}{}}
	if err := p.restore(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.cut(); p.wg.Wait() })
	return p
}

func (p *tcpProxy) restore() error {
	lis, err := net.Listen("tcp", p.addr)
	if err != nil {
		return fmt.Errorf("proxy listen %s: %w", p.addr, err)
	}
	p.mu.Lock()
	p.lis = lis
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() { defer p.wg.Done(); p.forward(c) }()
		}
	}()
	return nil
}

func (p *tcpProxy) track(c net.Conn, add bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add && p.lis == nil {
		return false
	}
	if add {
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
	return true
}

func (p *tcpProxy) forward(client net.Conn) {
	defer client.Close()
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	defer server.Close()
	if !p.track(client, true) || !p.track(server, true) {
		return
	}
	defer p.track(client, false)
	defer p.track(server, false)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(server, client); done <- struct{}{} }()
	go func() { _, _ = io.Copy(client, server); done <- struct{}{} }()
	<-done
}

// cut closes the listener and every open connection.
func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lis != nil {
		p.lis.Close()
		p.lis = nil
	}
	for c := range p.conns {
		c.Close()
	}
}

// issuer is an OIDC-style token issuer: an ES256 key whose JWKS is served over HTTPS.
type issuer struct {
	url    string // the iss value
	jwks   string // https URL of the JWKS
	caFile string // PEM of the JWKS server's certificate, for SSL_CERT_FILE
	key    *ecdsa.PrivateKey
	kid    string
}

func startIssuer(t *testing.T, dir string) *issuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	iss := &issuer{url: "https://issuer.e2e.test", key: key, kid: "e2e-1"}
	pub, err := key.PublicKey.Bytes() // 0x04 || X || Y, 32 bytes each
	if err != nil {
		t.Fatal(err)
	}
	coord := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	jwks, _ := json.Marshal(map[string]any{"keys": []any{map[string]string{
		"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": iss.kid,
		"x": coord(pub[1:33]), "y": coord(pub[33:]),
	}}})
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/jwks" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwks)
	}))
	t.Cleanup(srv.Close)
	iss.jwks = srv.URL + "/jwks"
	iss.caFile = filepath.Join(dir, "jwks-ca.pem")
	pemData := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(iss.caFile, pemData, 0o644); err != nil {
		t.Fatal(err)
	}
	return iss
}

// token signs claims (iss, aud and times filled in unless given).
func (iss *issuer) token(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	now := time.Now()
	full := jwt.MapClaims{"iss": iss.url, "aud": "tenantgate", "sub": "user-1", "iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()}
	for k, v := range claims {
		full[k] = v
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, full)
	tok.Header["kid"] = iss.kid
	s, err := tok.SignedString(iss.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (iss *issuer) tenantToken(t *testing.T, tenantID string) string {
	return iss.token(t, jwt.MapClaims{"tenant_id": tenantID})
}

func (iss *issuer) adminToken(t *testing.T) string {
	return iss.token(t, jwt.MapClaims{"sub": "e2e-admin", "scope": "tenantgate:admin"})
}

// smtpServer keeps the mail it receives.
type smtpServer struct {
	addr string
	mu   sync.Mutex
	rcpt []string
}

func startSMTP(t *testing.T) *smtpServer {
	t.Helper()
	s := &smtpServer{}
	srv := gosmtp.NewServer(s)
	srv.Domain = "localhost"
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return s
}

func (s *smtpServer) NewSession(*gosmtp.Conn) (gosmtp.Session, error) { return &smtpSession{s: s}, nil }

func (s *smtpServer) received(rcpt string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.rcpt {
		if r == rcpt {
			return true
		}
	}
	return false
}

type smtpSession struct {
	s    *smtpServer
	rcpt []string
}

func (ss *smtpSession) Reset()                                 { ss.rcpt = nil }
func (ss *smtpSession) Logout() error                          { return nil }
func (ss *smtpSession) Mail(string, *gosmtp.MailOptions) error { return nil }
func (ss *smtpSession) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	ss.rcpt = append(ss.rcpt, to)
	return nil
}
func (ss *smtpSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	ss.s.mu.Lock()
	ss.s.rcpt = append(ss.s.rcpt, ss.rcpt...)
	ss.s.mu.Unlock()
	return nil
}

// eventually polls cond every 100ms until it returns nil or within passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not true after %s: %v", what, within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var errNotYet = errors.New("not yet")
