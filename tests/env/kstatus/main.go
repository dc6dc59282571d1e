// Command kstatus prints how kstatus (sigs.k8s.io/cli-utils, the library Flux and the Argo CD
// health model follow) reads Kubernetes objects: for each object of a JSON object or List on
// stdin, one line "NAMESPACE/NAME STATUS MESSAGE" (STATUS is Current, InProgress, Failed,
// Terminating, NotFound or Unknown). The end-to-end tests use it to show that GitOps tools
// read the operator's status as the operator means it.
package main

import (
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	// The unstructured decoder keeps integers as int64, as the API machinery expects.
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(data); err != nil {
		fail(err)
	}
	list := &unstructured.UnstructuredList{Items: []unstructured.Unstructured{*obj}}
	if obj.IsList() {
		if list, err = obj.ToList(); err != nil {
			fail(err)
		}
	}
	for i := range list.Items {
		u := &list.Items[i]
		res, err := status.Compute(u)
		if err != nil {
			fail(err)
		}
		fmt.Printf("%s/%s %s %s\n", u.GetNamespace(), u.GetName(), res.Status, res.Message)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kstatus:", err)
	os.Exit(1)
}
