// Command etcd is the upstream etcd server, built from go.etcd.io/etcd for
// the test cluster that test/k8s/cluster.sh starts.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
