// Package kubetest is a recording kube.Client for tests: it keeps the objects applied, as an API
// server would after a server-side apply, and forgets deleted ones.
package kubetest

import (
	"context"
	"sort"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/tenantgate/tenantgate/provisioner/kube"
)

// Recorder is a kube.Client that keeps objects in memory.
type Recorder struct {
	mu      sync.Mutex
	objects map[kube.Ref]*unstructured.Unstructured
	applies int
}

// New returns an empty Recorder.
func New() *Recorder { return &Recorder{objects: map[kube.Ref]*unstructured.Unstructured{}} }

// Apply implements kube.Client.
func (r *Recorder) Apply(_ context.Context, obj *unstructured.Unstructured) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.objects[kube.RefOf(obj)] = obj.DeepCopy()
	r.applies++
	return nil
}

// Delete implements kube.Client; deleting a namespace deletes what is in it.
func (r *Recorder) Delete(_ context.Context, ref kube.Ref) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.objects, ref)
	if ref.Kind == "Namespace" {
		for k := range r.objects {
			if k.Namespace == ref.Name {
				delete(r.objects, k)
			}
		}
	}
	return nil
}

// Refs lists the objects held, sorted.
func (r *Recorder) Refs() []kube.Ref {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]kube.Ref, 0, len(r.objects))
	for k := range r.objects {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// Get returns a copy of an object held; nil when absent.
func (r *Recorder) Get(ref kube.Ref) *unstructured.Unstructured {
	r.mu.Lock()
	defer r.mu.Unlock()
	if o, ok := r.objects[ref]; ok {
		return o.DeepCopy()
	}
	return nil
}
