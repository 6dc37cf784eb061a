// Package charttest proves the Helm chart in charts/tenantgate: helm lint, helm template with
// realistic value sets, every rendered object dry-run applied to a real kube-apiserver (internal/kubetest),
// the Envoy bootstrap validated deeply, and helm install and uninstall leaving nothing behind.
package charttest
