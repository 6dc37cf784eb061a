package registry_test

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tenantgate/tenantgate/internal/registry"
	"github.com/tenantgate/tenantgate/internal/registry/registrytest"
	"github.com/tenantgate/tenantgate/internal/tenant"
	"github.com/tenantgate/tenantgate/internal/testenv"
)

// newPostgres returns a Postgres registry on a fresh, migrated database, closed at cleanup, and the
// database's URL.
func newPostgres(t testing.TB, opts ...registry.PostgresOption) (*registry.Postgres, string) {
	t.Helper()
	url := testenv.Database(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := registry.Migrate(ctx, url, nil); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	pg, err := registry.OpenPostgres(ctx, url, opts...)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(pg.Close)
	return pg, url
}

func TestPostgres_Conformance(t *testing.T) {
	registrytest.Run(t, func(t *testing.T) registry.Registry {
		pg, _ := newPostgres(t)
		return pg
	})
}

// Every field of tenant.Upstream and tenant.Resources survives a round trip, so a field added to
// either cannot be forgotten in the registry's select list.
func TestPostgres_StoresEveryUpstreamAndResourcesField(t *testing.T) {
	pg, _ := newPostgres(t)
	in := tenant.Tenant{ID: tenant.NewID(), Slug: "every-field", Name: "Every field", Plan: "free", Model: tenant.Silo}
	fill(t, reflect.ValueOf(&in.Upstream).Elem())
	fill(t, reflect.ValueOf(&in.Resources).Elem())
	ctx := context.Background()
	if _, err := pg.Create(ctx, in); err != nil {
		t.Fatal(err)
	}
	got, err := pg.Get(ctx, in.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Upstream, in.Upstream) || !reflect.DeepEqual(got.Resources, in.Resources) {
		t.Fatalf("round trip lost a field:\n got  %+v %+v\n want %+v %+v", got.Upstream, got.Resources, in.Upstream, in.Resources)
	}
}

// fill sets every field of the struct v to a distinct non-zero value.
func fill(t *testing.T, v reflect.Value) {
	t.Helper()
	for i := range v.NumField() {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString("value-of-" + strings.ToLower(v.Type().Field(i).Name))
		case reflect.Slice:
			f.Set(reflect.MakeSlice(f.Type(), 2, 2))
			for j := range f.Len() {
				fill(t, f.Index(j))
			}
		case reflect.Uint32:
			f.SetUint(uint64(1000 + i))
		default:
			t.Fatalf("fill: field %s of kind %s: teach this test about it", v.Type().Field(i).Name, f.Kind())
		}
	}
}
