//go:build !unix

package changes

import (
	"context"
	"os/exec"
)

// ownProcessGroup leaves cmd as it is: without process groups, cancelling
// kills git alone.
func ownProcessGroup(cmd *exec.Cmd) {}

// lockDir does not lock: pollers on such systems must not share a
// directory.
func lockDir(ctx context.Context, dir string) (func(), error) { return func() {}, nil }
