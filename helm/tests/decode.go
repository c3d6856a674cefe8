// Package helmtests checks the charts of helm/ with the real helm and the
// Kubernetes API types: every rendered manifest must decode strictly (an
// unknown or misspelt field, a duplicate key or a wrong type is an error)
// into the Go type the API server would use for its apiVersion and kind.
package helmtests

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// The kinds the charts may render, by "apiVersion/kind". Anything else is
// refused: a kind missing here is either a typo or needs adding on purpose.
var kinds = map[string]func() any{
	"v1/ConfigMap":                             func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                                func() any { return &corev1.Secret{} },
	"v1/Service":                               func() any { return &corev1.Service{} },
	"v1/ServiceAccount":                        func() any { return &corev1.ServiceAccount{} },
	"apps/v1/Deployment":                       func() any { return &appsv1.Deployment{} },
	"batch/v1/Job":                             func() any { return &batchv1.Job{} },
	"autoscaling/v2/HorizontalPodAutoscaler":   func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"policy/v1/PodDisruptionBudget":            func() any { return &policyv1.PodDisruptionBudget{} },
	"networking.k8s.io/v1/Ingress":             func() any { return &networkingv1.Ingress{} },
	"rbac.authorization.k8s.io/v1/Role":        func() any { return &rbacv1.Role{} },
	"rbac.authorization.k8s.io/v1/RoleBinding": func() any { return &rbacv1.RoleBinding{} },
	"monitoring.coreos.com/v1/ServiceMonitor":  func() any { return &monitoringv1.ServiceMonitor{} },
	"monitoring.coreos.com/v1/PodMonitor":      func() any { return &monitoringv1.PodMonitor{} },
	"monitoring.coreos.com/v1/PrometheusRule":  func() any { return &monitoringv1.PrometheusRule{} },
}

// Object is one rendered manifest: its typed value, its generic JSON form
// and where it came from.
type Object struct {
	Source  string
	Kind    string
	Name    string
	Typed   any
	Generic map[string]any
}

var separator = regexp.MustCompile(`(?m)^---\s*$`)

// SplitDocuments splits `helm template` output into its non-empty documents.
func SplitDocuments(rendered []byte) [][]byte {
	var docs [][]byte
	for _, doc := range separator.Split(string(rendered), -1) {
		body := strings.TrimSpace(stripComments(doc))
		if body == "" {
			continue
		}
		docs = append(docs, []byte(doc))
	}
	return docs
}

func stripComments(doc string) string {
	var kept []string
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		kept = append(kept, line)
	}
	return strings.Join(kept, "\n")
}

var sourceLine = regexp.MustCompile(`(?m)^# Source: (.*)$`)

// DecodeStrict decodes one manifest into its API type, refusing unknown
// fields, duplicate keys and wrong types.
func DecodeStrict(doc []byte) (Object, error) {
	source := ""
	if m := sourceLine.FindSubmatch(doc); m != nil {
		source = string(m[1])
	}
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return Object{}, fmt.Errorf("%s: not YAML: %w", source, err)
	}
	key := head.APIVersion + "/" + head.Kind
	factory, ok := kinds[key]
	if !ok {
		return Object{}, fmt.Errorf("%s: unknown apiVersion/kind %q", source, key)
	}
	typed := factory()
	if err := yaml.UnmarshalStrict(doc, typed); err != nil {
		return Object{}, fmt.Errorf("%s (%s %s): %w", source, head.Kind, head.Metadata.Name, err)
	}
	var generic map[string]any
	if err := yaml.Unmarshal(doc, &generic); err != nil {
		return Object{}, fmt.Errorf("%s: %w", source, err)
	}
	if head.Metadata.Name == "" {
		return Object{}, fmt.Errorf("%s: %s without metadata.name", source, head.Kind)
	}
	return Object{Source: source, Kind: head.Kind, Name: head.Metadata.Name, Typed: typed, Generic: generic}, nil
}

// DecodeAll decodes every document of a `helm template` output.
func DecodeAll(rendered []byte) ([]Object, error) {
	var objects []Object
	var problems []string
	for _, doc := range SplitDocuments(rendered) {
		object, err := DecodeStrict(bytes.TrimSpace(doc))
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		objects = append(objects, object)
	}
	if len(problems) > 0 {
		return objects, fmt.Errorf("%s", strings.Join(problems, "\n"))
	}
	return objects, nil
}
