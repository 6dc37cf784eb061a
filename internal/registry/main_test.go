package registry_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind (watchers, pools, connections).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
