// Package kubernetes tests the provisioner's Kubernetes step against a real kube-apiserver and
// kube-controller-manager (internal/kubetest): server-side apply, compensation, and the quota,
// priority-class and LimitRange behaviour tenants rely on.
package kubernetes
