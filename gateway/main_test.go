package gateway_test

import (
	"testing"

	"github.com/sygaldry/sygaldry/internal/testenv"
)

// TestMain fails the run when a test left a container behind.
func TestMain(m *testing.M) { testenv.Main(m) }
