package workspace

import (
	"testing"

	"github.com/sygaldry/sygaldry/internal/testenv"
)

// TestMain fails the run when a test left a container behind: every rig
// labels its containers sygaldry.test=<UniqueName> and removes them in Cleanup.
func TestMain(m *testing.M) { testenv.Main(m) }
