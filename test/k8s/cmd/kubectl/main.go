// Command kubectl is the upstream kubectl at the cluster's own version
// (Debian 12's kubernetes-client is 1.20, far outside the supported skew),
// built for test/k8s/cluster.sh and test/k8s/smoke.sh.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	logs.GlogSetter(cmd.GetLogVerbosity(os.Args)) //nolint:errcheck
	if err := cli.RunNoErrOutput(cmd.NewDefaultKubectlCommand()); err != nil {
		util.CheckErr(err)
	}
}
