package expiry

import (
	"context"
	"errors"
	"testing"
	"time"
)

type key struct{}

// The context behaves as context.WithDeadline's, but ends at expire.
func TestExpireEndsTheContextAsItsDeadlineWould(t *testing.T) {
	deadline := time.Now().Add(time.Hour)
	parent := context.WithValue(context.Background(), key{}, "v")
	ctx, expire, cancel := New(parent, deadline)
	defer cancel()
	child, cancelChild := context.WithCancel(ctx)
	defer cancelChild()
	later, cancelLater := context.WithDeadline(ctx, deadline.Add(time.Hour))
	defer cancelLater()
	if d, ok := ctx.Deadline(); !ok || !d.Equal(deadline) {
		t.Fatalf("Deadline() = %v, %v; want %v", d, ok, deadline)
	}
	if d, _ := later.Deadline(); !d.Equal(deadline) {
		t.Fatalf("a later deadline derived from it = %v; want the earlier %v", d, deadline)
	}
	if ctx.Value(key{}) != "v" || ctx.Err() != nil || child.Err() != nil {
		t.Fatalf("before expire: value %v, err %v, child's %v", ctx.Value(key{}), ctx.Err(), child.Err())
	}
	expire()
	for name, c := range map[string]context.Context{"ctx": ctx, "child": child, "later": later} {
		<-c.Done()
		if !errors.Is(c.Err(), context.DeadlineExceeded) || !errors.Is(context.Cause(c), context.DeadlineExceeded) {
			t.Errorf("%s: Err %v, Cause %v; want context.DeadlineExceeded", name, c.Err(), context.Cause(c))
		}
	}
}

func TestTheParentsEndCancelsIt(t *testing.T) {
	parent, cancelParent := context.WithCancel(context.Background())
	ctx, expire, cancel := New(parent, time.Now().Add(time.Hour))
	defer cancel()
	cancelParent()
	<-ctx.Done()
	expire()
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Fatalf("Err %v; want context.Canceled", ctx.Err())
	}
}
