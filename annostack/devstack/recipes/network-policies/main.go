// kube-network-policies' standard policy controller as a node process: upstream's cmd/main.go
// builds its client from the in-cluster service account, which a process on the host does not
// have, so this one takes a kubeconfig. The verdict on each connection's first packet is the
// published package's. Its nftables table, which would queue those packets, does not load on a
// kernel without nft_queue; the stack's iptables NFQUEUE rules (annostack/devstack/hoststate.py,
// PolicyQueue) queue them instead, and the controller logs its failed table sync.
package main

import (
	"context"
	"flag"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"sigs.k8s.io/kube-network-policies/pkg/networkpolicy"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the apiserver to watch")
	nodeName := flag.String("hostname-override", "", "the node's name")
	metrics := flag.String("metrics-bind-address", "127.0.0.1:9080", "where /metrics is served")
	queueID := flag.Int("nfqueue-id", 100, "the NFQUEUE that first packets are sent to")
	klog.InitFlags(nil)
	flag.Parse()
	os.Exit(run(*kubeconfig, *nodeName, *metrics, *queueID))
}

func run(kubeconfig, nodeName, metrics string, queueID int) int {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, unix.SIGTERM)
	defer cancel()
	config, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		klog.Errorf("reading %s: %v", kubeconfig, err)
		return 1
	}
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		klog.Errorf("making a client: %v", err)
		return 1
	}
	http.Handle("/metrics", promhttp.Handler())
	go func() { klog.Error(http.ListenAndServe(metrics, nil)) }()

	factory := informers.NewSharedInformerFactory(client, 0)
	controller, err := networkpolicy.NewController(
		client,
		factory.Networking().V1().NetworkPolicies(),
		factory.Core().V1().Namespaces(),
		factory.Core().V1().Pods(),
		nil, nil, nil, nil, // no (Baseline)AdminNetworkPolicy: alpha APIs the stack does not serve
		networkpolicy.Config{
			QueueID:  queueID,
			NodeName: nodeName,
		},
	)
	if err != nil {
		klog.Errorf("starting the controller: %v", err)
		return 1
	}
	go func() {
		if err := controller.Run(ctx); err != nil {
			klog.Errorf("controller stopped: %v", err)
			cancel()
		}
	}()
	factory.Start(ctx.Done())
	<-ctx.Done()
	time.Sleep(2 * time.Second) // Run's deferred cleanup removes the nftables table
	return 0
}
