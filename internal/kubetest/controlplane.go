package kubetest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Controllers are the kube-controller-manager controllers StartControllers runs: quotas are enforced
// only once the resourcequota controller has filled in a quota's status, a namespace goes away only
// when the namespace controller has emptied it, owned objects follow their owner through the garbage
// collector, and pods are admitted only where the serviceaccount controller made the default account.
var Controllers = []string{"resourcequota", "namespace", "garbagecollector", "serviceaccount"}

// ControlPlane is a running etcd and kube-apiserver (and, once started, kube-controller-manager).
type ControlPlane struct {
	// Config authenticates as a cluster admin (group system:masters).
	Config *rest.Config
	// Kubeconfig is the path of a kubeconfig file with the same admin credentials, for helm and kubectl.
	Kubeconfig string
	// Version is the Kubernetes version of the binaries.
	Version string

	dir, bins  string
	files      map[string]string
	etcd, api  *process
	mu         sync.Mutex
	controller *process
	client     *kubernetes.Clientset
}

// New starts etcd and kube-apiserver from the binaries in AssetsDir and waits until the API server is
// ready. Stop ends them and removes their files.
func New(ctx context.Context) (*ControlPlane, error) {
	bins, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "kubetest-")
	if err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	cp := &ControlPlane{dir: dir, bins: bins}
	if err := cp.start(ctx); err != nil {
		cp.Stop()
		return nil, err
	}
	return cp, nil
}

func (cp *ControlPlane) start(ctx context.Context) error {
	version, err := PinnedVersion()
	if err != nil && os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return err
	}
	cp.Version = version
	p, err := newPKI()
	if err != nil {
		return err
	}
	if cp.files, err = p.write(cp.dir); err != nil {
		return err
	}
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	etcdURL, peerURL := "http://"+hostPort(ports[0]), "http://"+hostPort(ports[1])
	cp.etcd, err = startProcess(cp.dir, filepath.Join(cp.bins, "etcd"), "etcd",
		"--name=kubetest", "--data-dir="+filepath.Join(cp.dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=kubetest="+peerURL, "--initial-cluster-state=new",
		// A test cluster survives no crash, so fsync buys nothing and costs seconds on a busy disk.
		"--unsafe-no-fsync", "--log-level=warn",
	)
	if err != nil {
		return err
	}
	plain := &http.Client{Timeout: 2 * time.Second}
	if err := cp.etcd.waitFor(ctx, func(ctx context.Context) error { return getOK(ctx, plain, etcdURL+"/health") }); err != nil {
		return err
	}

	apiURL := "https://" + hostPort(ports[2])
	cp.api, err = startProcess(cp.dir, filepath.Join(cp.bins, "kube-apiserver"), "kube-apiserver",
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", ports[2]),
		"--cert-dir="+filepath.Join(cp.dir, "apiserver-certs"),
		"--tls-cert-file="+cp.files["apiserver.crt"], "--tls-private-key-file="+cp.files["apiserver.key"],
		"--client-ca-file="+cp.files["ca.crt"],
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+cp.files["sa.key"], "--service-account-signing-key-file="+cp.files["sa.key"],
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=RBAC",
		// The kubernetes Service's endpoints would be this loopback address, which Endpoints refuse;
		// nothing here needs that Service to lead anywhere.
		"--endpoint-reconciler-type=none",
		"--allow-privileged=true",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
	)
	if err != nil {
		return err
	}
	cp.Config = &rest.Config{
		Host: apiURL,
		TLSClientConfig: rest.TLSClientConfig{
			CAData: p.caCert, CertData: p.adminCert, KeyData: p.adminKey,
		},
		QPS: 200, Burst: 400,
	}
	tlsClient, err := adminHTTPClient(p)
	if err != nil {
		return err
	}
	if err := cp.api.waitFor(ctx, func(ctx context.Context) error { return getOK(ctx, tlsClient, apiURL+"/readyz") }); err != nil {
		return err
	}
	if cp.client, err = kubernetes.NewForConfig(cp.Config); err != nil {
		return fmt.Errorf("kubetest: client: %w", err)
	}
	cp.Kubeconfig = filepath.Join(cp.dir, "admin.kubeconfig")
	return writeKubeconfig(cp.Kubeconfig, apiURL, p)
}

// StartControllers starts kube-controller-manager with Controllers unless it already runs, and waits
// until its controllers act (the serviceaccount controller has made the default account).
func (cp *ControlPlane) StartControllers(ctx context.Context) error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.controller != nil {
		if err := cp.controller.exited(); err == nil {
			return nil
		}
		cp.controller.stop(0)
	}
	var err error
	cp.controller, err = startProcess(cp.dir, filepath.Join(cp.bins, "kube-controller-manager"), "kube-controller-manager",
		"--kubeconfig="+cp.Kubeconfig,
		"--controllers="+strings.Join(Controllers, ","),
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--secure-port=0",
		"--concurrent-namespace-syncs=5",
		"--concurrent-resource-quota-syncs=5",
		"--resource-quota-sync-period=15s",
		"--profiling=false",
	)
	if err != nil {
		return err
	}
	// A namespace made now gets its default service account only from a running serviceaccount
	// controller, so seeing it proves the controller manager is up and syncing.
	probe := "kubetest-probe-" + randSuffix()
	if _, err := cp.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: probe}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("kubetest: probe namespace: %w", err)
	}
	defer cp.client.CoreV1().Namespaces().Delete(context.WithoutCancel(ctx), probe, metav1.DeleteOptions{})
	return cp.controller.waitFor(ctx, func(ctx context.Context) error {
		_, err := cp.client.CoreV1().ServiceAccounts(probe).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
}

// Client is a clientset with the admin credentials.
func (cp *ControlPlane) Client() kubernetes.Interface { return cp.client }

// Stop ends every process and removes the control plane's files.
func (cp *ControlPlane) Stop() {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.controller.stop(10 * time.Second)
	cp.api.stop(15 * time.Second)
	cp.etcd.stop(10 * time.Second)
	os.RemoveAll(cp.dir)
}

// Logs returns the last lines of each process's log, for a failing test to print.
func (cp *ControlPlane) Logs(lines int) string {
	var b strings.Builder
	for _, p := range []*process{cp.etcd, cp.api, cp.controller} {
		if p != nil {
			fmt.Fprintf(&b, "==> %s <==\n%s\n", p.name, p.logTail(lines))
		}
	}
	return b.String()
}

func getOK(ctx context.Context, c *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: %s: %s", errNotReady, resp.Status, strings.TrimSpace(string(body)))
	}
	if strings.HasSuffix(url, "/health") { // etcd answers 200 with {"health":"false"} while it elects
		var h struct {
			Health string `json:"health"`
		}
		if json.Unmarshal(body, &h) != nil || h.Health != "true" {
			return fmt.Errorf("%w: %s", errNotReady, body)
		}
	}
	return nil
}

func adminHTTPClient(p *pki) (*http.Client, error) {
	cert, err := tls.X509KeyPair(p.adminCert, p.adminKey)
	if err != nil {
		return nil, fmt.Errorf("kubetest: admin key pair: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(p.caCert) {
		return nil, errors.New("kubetest: CA certificate does not parse")
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
	}}, nil
}

func writeKubeconfig(path, server string, p *pki) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: p.caCert}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: p.adminCert, ClientKeyData: p.adminKey}
	cfg.Contexts["kubetest"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: "admin", Namespace: "default"}
	cfg.CurrentContext = "kubetest"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("kubetest: write kubeconfig: %w", err)
	}
	return nil
}
