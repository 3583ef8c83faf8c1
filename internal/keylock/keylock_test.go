package keylock

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestKeyedLocks(t *testing.T) {
	var k Set
	ctx := context.Background()

	// One holder per key at a time; other keys are independent.
	var inside, most atomic.Int32
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock, err := k.Lock(ctx, "a")
			if err != nil {
				t.Error(err)
				return
			}
			n := inside.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			time.Sleep(time.Millisecond)
			inside.Add(-1)
			unlock()
		}()
	}
	unlockB, err := k.Lock(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if most.Load() != 1 {
		t.Errorf("%d holders at once", most.Load())
	}

	// A waiter whose context ends gives up with its cause.
	cause := errors.New("client went away")
	cctx, cancel := context.WithCancelCause(ctx)
	go func() { time.Sleep(20 * time.Millisecond); cancel(cause) }()
	if _, err := k.Lock(cctx, "b"); !errors.Is(err, cause) {
		t.Errorf("err = %v, want the cause", err)
	}
	unlockB()

	k.mu.Lock()
	left := len(k.m)
	k.mu.Unlock()
	if left != 0 {
		t.Errorf("%d lock entries left", left)
	}
}
