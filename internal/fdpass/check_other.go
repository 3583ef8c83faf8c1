//go:build !linux

package fdpass

import (
	"fmt"
	"os"
)

// Check refuses everything off Linux, where the gateway does not run.
func Check(k Kind, files []*os.File) error {
	return fmt.Errorf("%w: %s: descriptor checks need Linux", ErrBadFD, k)
}
