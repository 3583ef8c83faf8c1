// Command kubelet is the upstream kubelet, built from k8s.io/kubernetes for
// the test cluster that test/k8s/cluster.sh starts.
package main

import (
	"context"
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	// NewKubeletCommand panics on a nil context.
	os.Exit(cli.Run(app.NewKubeletCommand(context.Background())))
}
