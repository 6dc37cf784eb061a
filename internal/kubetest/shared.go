package kubetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The control plane of one test package: started by the first test that asks, stopped by Main after the
// last. This is the package's only mutable state, and it exists because the processes take seconds to
// start and tests share them through their own namespaces.
var shared struct {
	mu      sync.Mutex
	main    bool
	cp      *ControlPlane
	err     error
	started bool
}

// Main runs the package's tests and then stops the shared control plane. Call it from TestMain:
//
//	func TestMain(m *testing.M) { kubetest.Main(m) }
func Main(m *testing.M) {
	shared.mu.Lock()
	shared.main = true
	shared.mu.Unlock()
	code := m.Run()
	shared.mu.Lock()
	if shared.cp != nil {
		shared.cp.Stop()
	}
	shared.mu.Unlock()
	os.Exit(code)
}

// Option adjusts what Start brings up.
type Option func(*options)

type options struct{ controllers bool }

// WithControllers also runs kube-controller-manager (see Controllers).
func WithControllers() Option { return func(o *options) { o.controllers = true } }

// Start returns the package's control plane, starting it on first use (and kube-controller-manager
// when asked for the first time). Without the binaries the test is skipped with a message saying how
// to build them, or fails under CI=true, where skipping would hide the Kubernetes tests.
func Start(t testing.TB, opts ...Option) *ControlPlane {
	t.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.main {
		t.Fatal("kubetest: call kubetest.Main(m) from TestMain so the control plane is stopped after the tests")
	}
	if !shared.started {
		shared.started = true
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		shared.cp, shared.err = New(ctx)
		cancel()
	}
	if shared.err != nil {
		if errors.Is(shared.err, errNoBinaries) && os.Getenv("CI") != "true" {
			t.Skipf("SKIPPING Kubernetes test: %v", shared.err)
		}
		t.Fatalf("kubetest: control plane: %v", shared.err)
	}
	if o.controllers {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := shared.cp.StartControllers(ctx); err != nil {
			t.Fatalf("kubetest: controllers: %v", err)
		}
	}
	return shared.cp
}

// Namespace creates a namespace named prefix-<random> for one test and deletes it at cleanup.
func (cp *ControlPlane) Namespace(t testing.TB, prefix string) string {
	t.Helper()
	name := prefix + "-" + randSuffix()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := cp.client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("kubetest: create namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		err := cp.client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("kubetest: delete namespace %s: %v", name, err)
		}
	})
	return name
}

// randSuffix is 8 hex digits, enough to keep the names of one test run apart.
func randSuffix() string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("kubetest: random: %v", err))
	}
	return hex.EncodeToString(b[:])
}
