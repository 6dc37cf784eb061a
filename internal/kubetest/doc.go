// Package kubetest runs a real Kubernetes control plane for a test package: etcd, kube-apiserver and,
// when a test asks, kube-controller-manager with the quota, namespace, garbage-collector and
// service-account controllers, on free loopback ports, built by scripts/kube-binaries.sh.
package kubetest
