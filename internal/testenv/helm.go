package testenv

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Helm returns the path of the helm binary: $HELM, then PATH, then $(go env GOPATH)/bin, where
// `make helm` installs the pinned version. Missing, it fails the test under CI=true and skips it,
// loudly, otherwise.
func Helm(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("HELM"); p != "" {
		return p
	}
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "helm")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	Unavailable(t, "helm (install the pinned version with: make helm)", errors.New("not on PATH, $HELM or $(go env GOPATH)/bin"))
	return ""
}
