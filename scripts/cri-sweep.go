// cri-sweep stops and removes every pod sandbox of a CRI runtime, as
// `crictl stopp` and `crictl rmp` would (Debian has no crictl package):
// stopping a sandbox kills its containers and runs the CNI DEL that frees
// its address, veth and chains; removing it deletes its containers, so their
// shims exit and their root filesystems are unmounted.
//
//	cri-sweep unix:///path/to/containerd.sock
//
// scripts/control-plane builds it from the Kubernetes source tree it builds
// the node from (it uses the kubelet's own CRI client) and runs it when it
// stops the node, after the kubelet and before containerd.
package main

import (
	"fmt"
	"os"
	"time"

	"k8s.io/kubernetes/pkg/kubelet/cri/remote"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: cri-sweep unix:///path/to/containerd.sock")
		os.Exit(2)
	}
	runtime, err := remote.NewRemoteRuntimeService(os.Args[1], time.Minute)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cri-sweep: connect to %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	sandboxes, err := runtime.ListPodSandbox(nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cri-sweep: list pod sandboxes: %v\n", err)
		os.Exit(1)
	}
	failed := false
	for _, sandbox := range sandboxes {
		name := sandbox.Metadata.Namespace + "/" + sandbox.Metadata.Name
		if err := runtime.StopPodSandbox(sandbox.Id); err != nil {
			fmt.Fprintf(os.Stderr, "cri-sweep: stop pod sandbox of %s: %v\n", name, err)
			failed = true
			continue
		}
		if err := runtime.RemovePodSandbox(sandbox.Id); err != nil {
			fmt.Fprintf(os.Stderr, "cri-sweep: remove pod sandbox of %s: %v\n", name, err)
			failed = true
			continue
		}
		fmt.Printf("removed the pod sandbox of %s\n", name)
	}
	if failed {
		os.Exit(1)
	}
}
