package fdpass

import (
	"testing"

	"github.com/sygaldry/sygaldry/internal/testenv"
)

// TestMain fails the run when a test left goroutines behind.
func TestMain(m *testing.M) { testenv.MainNoEngine(m) }
