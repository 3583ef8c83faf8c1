// Command pause is the pod sandbox process of the test cluster: it holds the
// pod's namespaces and exits on SIGTERM or SIGINT. Built static, it is the
// only file of the locally built sandbox image, so no registry is needed.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
