package main

import (
	"testing"

	"github.com/sygaldry/sygaldry/internal/testenv"
)

// TestMain fails the run when a launch test left a container behind.
func TestMain(m *testing.M) { testenv.Main(m) }
