package gateway

// SetTestHook makes hookPoint call f until the test ends.
func SetTestHook(t interface{ Cleanup(func()) }, f func(point, project string)) {
	testHook.Store(&f)
	t.Cleanup(func() { testHook.Store(nil) })
}
