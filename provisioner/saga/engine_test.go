package saga

import (
	"testing"
	"time"
)

func TestBackoff_DoublesWithJitterUpToTheCap(t *testing.T) {
	e := &Engine{o: Options{Backoff: 100 * time.Millisecond, MaxBackoff: time.Second}}
	for _, c := range []struct {
		attempt  int
		min, max time.Duration
	}{
		{1, 50 * time.Millisecond, 100 * time.Millisecond},
		{2, 100 * time.Millisecond, 200 * time.Millisecond},
		{4, 400 * time.Millisecond, 800 * time.Millisecond},
		{5, 500 * time.Millisecond, time.Second},
		{40, 500 * time.Millisecond, time.Second},
	} {
		for range 50 {
			if d := e.backoff(c.attempt); d < c.min || d > c.max {
				t.Fatalf("attempt %d: %s, want %s..%s", c.attempt, d, c.min, c.max)
			}
		}
	}
}

func TestOptions_DefaultsAndMistakes(t *testing.T) {
	var o Options
	if err := o.Validate(); err != nil || o.Workers != 4 || o.Lease != 30*time.Second || o.MaxAttempts != 5 {
		t.Fatalf("defaults: %+v, %v", o, err)
	}
	for name, o := range map[string]Options{
		"short lease":         {Lease: time.Millisecond},
		"negative workers":    {Workers: -1},
		"backoff above limit": {Backoff: time.Minute, MaxBackoff: time.Second},
	} {
		if err := o.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
