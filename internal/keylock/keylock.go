// Package keylock is a mutex per key that a waiter can abandon.
package keylock

import (
	"context"
	"sync"
)

// Set is a mutex per key (a container name, an image reference) that
// a waiter can abandon when its context ends. Ensure holds the container's
// lock for the whole find-create-start sequence, so concurrent first logins
// make one container: the others wait, then find it running. Unlike
// singleflight, every caller re-checks the engine itself, so a leader whose
// client went away (ctx cancelled half way) leaves no waiter with its error.
type Set struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	ch   chan struct{} // holds one token while locked
	refs int           // holders and waiters; the entry goes when it drops to 0
}

// Lock takes key's lock, or returns ctx's error. unlock must be called once.
func (k *Set) Lock(ctx context.Context, key string) (unlock func(), err error) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &keyLock{ch: make(chan struct{}, 1)}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()

	release := func() {
		k.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, context.Cause(ctx)
	}
}

// Held reports whether key is locked or waited for now.
func (k *Set) Held(key string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.m[key] != nil
}
