// Package kube builds a tenant's Kubernetes objects (namespace, quotas per plan and priority class,
// limit range, network policy) as pure functions, and applies them with server-side apply through a
// small Client, so that only the client differs between unit tests and a real API server.
package kube
