package kubetest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Binaries are the programs a control plane needs, all in one directory.
var Binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager"}

// errNoBinaries says the control plane cannot run because its programs are not built.
var errNoBinaries = errors.New("kubetest: control-plane binaries not found; run `make kube-binaries` (scripts/kube-binaries.sh)")

// AssetsDir finds the directory holding Binaries: $KUBEBUILDER_ASSETS if set (envtest's convention),
// else $TENANTGATE_KUBE_CACHE or ${XDG_CACHE_HOME:-$HOME/.cache}/tenantgate/kube, under the Kubernetes
// version pinned in tools/kube/go.mod — the directory scripts/kube-binaries.sh fills.
func AssetsDir() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, checkAssets(dir)
	}
	version, err := PinnedVersion()
	if err != nil {
		return "", err
	}
	cache := os.Getenv("TENANTGATE_KUBE_CACHE")
	if cache == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("kubetest: find the binary cache: %w", err)
			}
			base = filepath.Join(home, ".cache")
		}
		cache = filepath.Join(base, "tenantgate", "kube")
	}
	dir := filepath.Join(cache, version)
	return dir, checkAssets(dir)
}

func checkAssets(dir string) error {
	for _, b := range Binaries {
		fi, err := os.Stat(filepath.Join(dir, b))
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return fmt.Errorf("%w (missing %s)", errNoBinaries, filepath.Join(dir, b))
		}
	}
	return nil
}

// PinnedVersion is the k8s.io/kubernetes version required by tools/kube/go.mod, found by walking up
// from the working directory to the repository root.
func PinnedVersion() (string, error) {
	gomod, err := findUp(filepath.Join("tools", "kube", "go.mod"))
	if err != nil {
		return "", err
	}
	f, err := os.Open(gomod)
	if err != nil {
		return "", fmt.Errorf("kubetest: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "k8s.io/kubernetes" && strings.HasPrefix(fields[1], "v") {
			return fields[1], nil
		}
		if len(fields) >= 3 && fields[0] == "require" && fields[1] == "k8s.io/kubernetes" {
			return fields[2], nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("kubetest: read %s: %w", gomod, err)
	}
	return "", fmt.Errorf("kubetest: %s requires no k8s.io/kubernetes version", gomod)
}

func findUp(rel string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("kubetest: %w", err)
	}
	for {
		p := filepath.Join(dir, rel)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("kubetest: no %s above the working directory", rel)
		}
		dir = parent
	}
}
