//go:build tools

// Package kube pins the commands scripts/kube-binaries.sh builds, so that go.mod keeps them.
package kube

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
