package kube

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Ref names one object.
type Ref struct {
	APIVersion, Kind, Namespace, Name string
}

// RefOf returns the reference of obj.
func RefOf(obj *unstructured.Unstructured) Ref {
	return Ref{APIVersion: obj.GetAPIVersion(), Kind: obj.GetKind(), Namespace: obj.GetNamespace(), Name: obj.GetName()}
}

func (r Ref) String() string {
	if r.Namespace == "" {
		return fmt.Sprintf("%s %s", r.Kind, r.Name)
	}
	return fmt.Sprintf("%s %s/%s", r.Kind, r.Namespace, r.Name)
}

// Client applies and deletes objects. Apply is a server-side apply that takes ownership of the fields
// it sets; Delete of an object that does not exist succeeds.
type Client interface {
	Apply(ctx context.Context, obj *unstructured.Unstructured) error
	Delete(ctx context.Context, ref Ref) error
}

// resources maps the kinds we make to their API resources.
var resources = map[string]schema.GroupVersionResource{
	"v1/Namespace":                            {Version: "v1", Resource: "namespaces"},
	"v1/ResourceQuota":                        {Version: "v1", Resource: "resourcequotas"},
	"v1/LimitRange":                           {Version: "v1", Resource: "limitranges"},
	"networking.k8s.io/v1/NetworkPolicy":      {Group: "networking.k8s.io", Version: "v1", Resource: "networkpolicies"},
	"externaldns.k8s.io/v1alpha1/DNSEndpoint": {Group: "externaldns.k8s.io", Version: "v1alpha1", Resource: "dnsendpoints"},
}

// Dynamic is the Client over a real API server.
type Dynamic struct {
	client       dynamic.Interface
	fieldManager string
}

// NewDynamic returns a Client that applies with the given field manager.
func NewDynamic(client dynamic.Interface, fieldManager string) *Dynamic {
	return &Dynamic{client: client, fieldManager: fieldManager}
}

func (d *Dynamic) resource(r Ref) (dynamic.ResourceInterface, error) {
	gvr, ok := resources[r.APIVersion+"/"+r.Kind]
	if !ok {
		return nil, fmt.Errorf("kube: no resource known for %s %s", r.APIVersion, r.Kind)
	}
	if r.Namespace == "" {
		return d.client.Resource(gvr), nil
	}
	return d.client.Resource(gvr).Namespace(r.Namespace), nil
}

// Apply implements Client.
func (d *Dynamic) Apply(ctx context.Context, obj *unstructured.Unstructured) error {
	ref := RefOf(obj)
	res, err := d.resource(ref)
	if err != nil {
		return err
	}
	if _, err := res.Apply(ctx, ref.Name, obj, metav1.ApplyOptions{FieldManager: d.fieldManager, Force: true}); err != nil {
		return fmt.Errorf("kube: apply %s: %w", ref, err)
	}
	return nil
}

// Delete implements Client.
func (d *Dynamic) Delete(ctx context.Context, ref Ref) error {
	res, err := d.resource(ref)
	if err != nil {
		return err
	}
	policy := metav1.DeletePropagationForeground
	if err := res.Delete(ctx, ref.Name, metav1.DeleteOptions{PropagationPolicy: &policy}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("kube: delete %s: %w", ref, err)
	}
	return nil
}

// LoadConfig finds the cluster to talk to: the kubeconfig at path, else $KUBECONFIG, else
// ~/.kube/config, else the in-cluster config. ok is false when there is none.
func LoadConfig(path string) (cfg *rest.Config, ok bool, err error) {
	if path == "" {
		path = os.Getenv("KUBECONFIG")
	}
	if path == "" {
		if home, herr := os.UserHomeDir(); herr == nil {
			if p := filepath.Join(home, ".kube", "config"); fileExists(p) {
				path = p
			}
		}
	}
	if path != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return nil, false, fmt.Errorf("kube: kubeconfig %s: %w", path, err)
		}
		return cfg, true, nil
	}
	cfg, err = rest.InClusterConfig()
	if err == rest.ErrNotInCluster {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("kube: in-cluster config: %w", err)
	}
	return cfg, true, nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}
