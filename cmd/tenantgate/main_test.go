package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// binary is the tenantgate binary built once for the tests that run it as a process.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tenantgate-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "tenantgate")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build tenantgate:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freeAddr returns a loopback address with a port free at the time of the call.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// lockedBuffer collects a process's output while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func runTenantgate(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "TENANTGATE_DATABASE_URL=", "TENANTGATE_REDIS_URL=")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), errOut.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run tenantgate: %v", err)
	}
	return out.String(), errOut.String(), 0
}

func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(wd, "..", "..")
}

func TestServe_BadConfigExitsNonZeroNamingTheKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown key", []string{"--config", write("a.yaml", "listen:\n  gprc: :1\n")}, "listen.gprc"},
		{"bad duration", []string{"--config", write("b.yaml", "shutdown_timeout: soon\n")}, "shutdown_timeout"},
		{"unknown plan in tenants file", []string{"--tenants-file", write("t.yaml", "tenants:\n  - {slug: acme, name: Acme, plan: gold, model: pool}\n")}, `unknown plan "gold"`},
		{"bad listen flag", []string{"--admin-addr", "nowhere"}, "listen.admin"},
		{"unknown component flag", []string{"--components", "authz,billing"}, "components[1]"},
		{"missing config file", []string{"--config", filepath.Join(dir, "absent.yaml")}, "absent.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"serve", "--grpc-addr", freeAddr(t), "--admin-addr", freeAddr(t),
				"--http-addr", freeAddr(t), "--xds-addr", freeAddr(t)}, tt.args...)
			_, stderr, code := runTenantgate(t, args...)
			if code == 0 {
				t.Fatalf("exit code 0, want non-zero; stderr:\n%s", stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr does not name %q:\n%s", tt.want, stderr)
			}
		})
	}
}

func TestServe_PrintConfigRedactsSecrets(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "serve", "--print-config")
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(),
		"TENANTGATE_DATABASE_URL=postgres://tg:topsecret@db.internal:5432/tenantgate",
		"TENANTGATE_REDIS_URL=redis://:alsosecret@cache:6379/0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("print-config: %v", err)
	}
	if strings.Contains(string(out), "topsecret") || strings.Contains(string(out), "alsosecret") {
		t.Errorf("printed config leaks a secret:\n%s", out)
	}
	for _, want := range []string{"db.internal:5432", "enterprise:", "grpc: :9001"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("printed config lacks %q:\n%s", want, out)
		}
	}
}

// TestServe_EmbeddedDefaults runs the binary as the README's quickstart does (no database, no Redis)
// and checks what an operator sees: the log line about the embedded registry, health and readiness,
// metrics, gRPC health, and a clean exit on SIGTERM.
func TestServe_EmbeddedDefaults(t *testing.T) {
	p := startServe(t, "")
	logs, grpcAddr, adminAddr := &p.logs, p.grpcAddr, p.adminAddr
	if !strings.Contains(logs.String(), "embedded in-memory registry") || !strings.Contains(logs.String(), "examples/tenants.yaml") {
		t.Errorf("log does not say it runs on the embedded registry seeded from the example file:\n%s", logs.String())
	}
	// Without a database the provisioner has nothing to run on: the log says so, and does not also
	// claim it is enabled.
	if !strings.Contains(logs.String(), `msg="component not started" component=provisioner`) ||
		strings.Contains(logs.String(), `msg="component enabled" component=provisioner`) {
		t.Errorf("log does not say plainly that the provisioner is not started:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "tenants=3") {
		t.Errorf("log does not show the three demo tenants loaded:\n%s", logs.String())
	}
	if got := httpStatus("http://" + adminAddr + "/healthz"); got != http.StatusOK {
		t.Errorf("/healthz = %d", got)
	}
	body := httpBody(t, "http://"+adminAddr+"/metrics")
	if !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics lacks the Go collector")
	}

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	waitFor(t, 10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
	})

	p.terminate(t)
	if !strings.Contains(logs.String(), "shutting down") {
		t.Errorf("no shutdown log line:\n%s", logs.String())
	}
}

// serveProcess is a `tenantgate serve` the test started on free loopback ports.
type serveProcess struct {
	cmd                                    *exec.Cmd
	exited                                 chan error
	logs                                   lockedBuffer
	grpcAddr, adminAddr, httpAddr, xdsAddr string
}

// startServe runs `tenantgate serve` with the extra args, on free loopback ports, with the database
// URL given (empty: the embedded registry) and no Redis, and waits until /readyz answers 200. The
// process is killed at cleanup if the test has not stopped it.
func startServe(t *testing.T, databaseURL string, args ...string) *serveProcess {
	t.Helper()
	p := &serveProcess{exited: make(chan error, 1),
		grpcAddr: freeAddr(t), adminAddr: freeAddr(t), httpAddr: freeAddr(t), xdsAddr: freeAddr(t)}
	p.cmd = exec.Command(binary, append([]string{"serve", "--grpc-addr", p.grpcAddr, "--admin-addr", p.adminAddr,
		"--http-addr", p.httpAddr, "--xds-addr", p.xdsAddr}, args...)...)
	p.cmd.Dir = repoRoot(t)
	p.cmd.Env = append(os.Environ(), "TENANTGATE_DATABASE_URL="+databaseURL, "TENANTGATE_REDIS_URL=")
	p.cmd.Stdout, p.cmd.Stderr = &p.logs, &p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() { _ = p.cmd.Process.Kill() })
	deadline := time.Now().Add(30 * time.Second)
	for httpStatus("http://"+p.adminAddr+"/readyz") != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatalf("not ready within 30s:\n%s", p.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p
}

// terminate sends SIGTERM and fails the test unless the process exits cleanly within 20 s.
func (p *serveProcess) terminate(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, p.logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("still running 20s after SIGTERM:\n%s", p.logs.String())
	}
}

func waitFor(t *testing.T, limit time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func httpStatus(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func httpBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
