package grpcauth

import (
	"slices"
	"testing"
)

func TestExactRuleWinsOverServiceOverDefault(t *testing.T) {
	i := New(nil,
		DefaultScopes("d"),
		Require("/pkg.S/", "s"),
		Require("/pkg.S/M", "m"),
		Public("/grpc.health.v1.Health/"))
	for method, want := range map[string][]string{"/pkg.S/M": {"m"}, "/pkg.S/N": {"s"}, "/other.S/M": {"d"}} {
		if a := i.access(method); a.public || !slices.Equal(a.scopes, want) {
			t.Errorf("%s: %+v", method, a)
		}
	}
	if !i.access("/grpc.health.v1.Health/Check").public {
		t.Error("health is public")
	}
}
