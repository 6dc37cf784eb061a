package provisioner_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every provisioner, server and pool a test starts is stopped by its cleanup: nothing may outlive
// the tests. Idle keep-alive connections of the shared HTTP client are the only exception.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}
