package kubetest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func TestMain(m *testing.M) { Main(m) }

func TestPinnedVersion_IsTheToolsModulesKubernetes(t *testing.T) {
	v, err := PinnedVersion()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(v, "v1.") {
		t.Fatalf("pinned version %q is not a Kubernetes v1.x release", v)
	}
}

func TestAssetsDir_NamesWhatIsMissing(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("KUBEBUILDER_ASSETS", dir)
	_, err := AssetsDir()
	if !errors.Is(err, errNoBinaries) || !strings.Contains(err.Error(), filepath.Join(dir, "etcd")) {
		t.Fatalf("AssetsDir with an empty directory: %v", err)
	}
	for _, b := range Binaries {
		if err := os.WriteFile(filepath.Join(dir, b), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := AssetsDir(); err != nil || got != dir {
		t.Fatalf("AssetsDir = %q, %v; want %q", got, err, dir)
	}
}

func TestAssetsDir_DefaultCacheIsKeyedByVersion(t *testing.T) {
	t.Setenv("KUBEBUILDER_ASSETS", "")
	cache := t.TempDir()
	t.Setenv("TENANTGATE_KUBE_CACHE", cache)
	v, err := PinnedVersion()
	if err != nil {
		t.Fatal(err)
	}
	got, err := AssetsDir()
	if want := filepath.Join(cache, v); got != want || !errors.Is(err, errNoBinaries) {
		t.Fatalf("AssetsDir = %q, %v; want %q and the binaries missing", got, err, want)
	}
}

// The shared control plane serves the API through both the rest.Config and the kubeconfig file, and
// its controllers act once asked for.
func TestStart_ServesTheAPIAndRunsControllers(t *testing.T) {
	cp := Start(t, WithControllers())
	ctx := context.Background()
	if v, err := cp.Client().Discovery().ServerVersion(); err != nil || "v"+strings.TrimPrefix(v.GitVersion, "v") != cp.Version {
		t.Fatalf("server version %v (err %v), want %s", v, err, cp.Version)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", cp.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	fromFile, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ns := cp.Namespace(t, "kubetest-self")
	if _, err := fromFile.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		t.Fatalf("kubeconfig client: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := cp.Client().CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no default service account in %s: the controllers do not run: %v", ns, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop ends every process and removes the files, so nothing outlives the test binary.
func TestNew_StopLeavesNothingRunning(t *testing.T) {
	Start(t) // skips or fails like every other test when the binaries are missing
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cp, err := New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.StartControllers(ctx); err != nil {
		cp.Stop()
		t.Fatal(err)
	}
	procs := []*process{cp.etcd, cp.api, cp.controller}
	cp.Stop()
	for _, p := range procs {
		if err := syscall.Kill(p.cmd.Process.Pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s (pid %d) still exists after Stop: %v", p.name, p.cmd.Process.Pid, err)
		}
	}
	if _, err := os.Stat(cp.dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists after Stop: %v", cp.dir, err)
	}
}
