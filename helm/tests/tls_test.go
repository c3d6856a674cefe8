package helmtests

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// The configuration sections each service has a CA file for (docs/configuration.md):
// the chart may set only these (the service refuses an unknown key).
var tlsSections = map[string][]string{
	"query-api":        {"clickhouse", "kafka", "postgres", "redis"},
	"ingest-gateway":   {"kafka", "postgres"},
	"realtime-hub":     {"kafka", "postgres"},
	"stream-processor": {"clickhouse", "kafka"},
	"aggregator-cron":  {"clickhouse", "postgres"},
}

// The variable of each section's CA file, after the service's prefix
// (crates/service-kit/src/config.rs: <SERVICE>__SECTION__KEY; Kafka
// properties read underscores as dots: ssl_ca_location = ssl.ca.location).
var tlsVariable = map[string]string{
	"postgres":   "POSTGRES__CA_FILE",
	"clickhouse": "CLICKHOUSE__CA_FILE",
	"redis":      "REDIS__CA_FILE",
	"kafka":      "KAFKA__PROPERTIES__SSL_CA_LOCATION",
}

type tlsValues struct {
	Tls struct {
		ExistingSecret string            `json:"existingSecret"`
		ConfigMap      string            `json:"configMap"`
		MountPath      string            `json:"mountPath"`
		CaFiles        map[string]string `json:"caFiles"`
	} `json:"tls"`
}

// One pod of a render: the service's Deployment or the migration Job.
type podOf struct {
	what   string
	prefix string
	spec   *corev1.PodSpec
	// The sections whose CA the pod's program reads.
	sections []string
}

func pods(t *testing.T, chart string, objects []Object) []podOf {
	var found []podOf
	for _, o := range objects {
		switch v := o.Typed.(type) {
		case *appsv1.Deployment:
			found = append(found, podOf{"Deployment " + o.Name, strings.ToUpper(strings.ReplaceAll(chart, "-", "_")), &v.Spec.Template.Spec, tlsSections[chart]})
		case *batchv1.Job:
			found = append(found, podOf{"Job " + o.Name, "MIGRATE", &v.Spec.Template.Spec, []string{"clickhouse", "postgres"}})
		}
	}
	if len(found) == 0 {
		t.Fatalf("%s: no Deployment or Job rendered", chart)
	}
	return found
}

func caVariable(name string) bool {
	return strings.HasSuffix(name, "__CA_FILE") || strings.HasSuffix(name, "__SSL_CA_LOCATION")
}

// TestTLSFilesAreMountedAndPointedAt: with ci/tls-values.yaml, every
// Deployment and the migration Job mount the Secret/ConfigMap read-only at
// tls.mountPath and set each configured CA file's variable to
// <mountPath>/<file>, one per section the program has; with the defaults
// nothing of it is rendered.
func TestTLSFilesAreMountedAndPointedAt(t *testing.T) {
	helm := helmBinary(t)
	names := make([]string, 0, len(tlsSections))
	for name := range tlsSections {
		names = append(names, name)
	}
	sort.Strings(names)
	jobWithTLS := false
	for _, name := range names {
		c := chart{dir: filepath.Join("..", name), name: name}
		chart := name
		run(t, helm, "dependency", "update", "--skip-refresh", c.dir)
		valuesFile := filepath.Join(c.dir, "ci", "tls-values.yaml")
		raw, err := os.ReadFile(valuesFile)
		if err != nil {
			t.Fatalf("%s: every service chart needs a ci/tls-values.yaml: %v", chart, err)
		}
		var values tlsValues
		if err := yaml.Unmarshal(raw, &values); err != nil {
			t.Fatal(err)
		}
		tls := values.Tls
		if tls.MountPath == "" {
			tls.MountPath = "/etc/analytics/tls"
		}
		if len(tls.CaFiles) != len(tlsSections[chart]) {
			t.Errorf("%s: ci/tls-values.yaml should set a CA file for each of %v, sets %v", chart, tlsSections[chart], tls.CaFiles)
		}

		on, err := DecodeAll(render(t, helm, c, valuesFile))
		if err != nil {
			t.Fatal(err)
		}
		for _, pod := range pods(t, chart, on) {
			at := chart + " (tls) " + pod.what
			if strings.HasPrefix(pod.what, "Job") {
				jobWithTLS = true
			}
			var volume *corev1.Volume
			for i := range pod.spec.Volumes {
				if pod.spec.Volumes[i].Name == "tls" {
					volume = &pod.spec.Volumes[i]
				}
			}
			switch {
			case volume == nil:
				t.Errorf("%s: no volume named tls", at)
			case tls.ExistingSecret != "":
				if volume.Secret == nil || volume.Secret.SecretName != tls.ExistingSecret {
					t.Errorf("%s: volume tls should be Secret %s, is %+v", at, tls.ExistingSecret, volume.VolumeSource)
				}
			default:
				if volume.ConfigMap == nil || volume.ConfigMap.Name != tls.ConfigMap {
					t.Errorf("%s: volume tls should be ConfigMap %s, is %+v", at, tls.ConfigMap, volume.VolumeSource)
				}
			}
			for _, container := range pod.spec.Containers {
				mounted := false
				for _, m := range container.VolumeMounts {
					if m.Name == "tls" {
						mounted = true
						if m.MountPath != tls.MountPath || !m.ReadOnly {
							t.Errorf("%s: container %s mounts tls at %s (readOnly %v), want %s read-only", at, container.Name, m.MountPath, m.ReadOnly, tls.MountPath)
						}
					}
				}
				if !mounted {
					t.Errorf("%s: container %s does not mount tls", at, container.Name)
				}
				env := map[string]string{}
				for _, e := range container.Env {
					env[e.Name] = e.Value
				}
				want := map[string]string{}
				for _, section := range pod.sections {
					if file := tls.CaFiles[section]; file != "" {
						want[pod.prefix+"__"+tlsVariable[section]] = strings.TrimSuffix(tls.MountPath, "/") + "/" + file
					}
				}
				if len(want) == 0 {
					t.Errorf("%s: the case sets no CA file this pod reads", at)
				}
				for name, value := range want {
					if env[name] != value {
						t.Errorf("%s: container %s: %s = %q, want %q", at, container.Name, name, env[name], value)
					}
				}
				for name := range env {
					if _, ok := want[name]; caVariable(name) && !ok {
						t.Errorf("%s: container %s sets %s, which its program does not read", at, container.Name, name)
					}
				}
			}
		}

		off, err := DecodeAll(render(t, helm, c, ""))
		if err != nil {
			t.Fatal(err)
		}
		for _, pod := range pods(t, chart, off) {
			at := chart + " (default) " + pod.what
			for _, v := range pod.spec.Volumes {
				if v.Name == "tls" || v.Secret != nil {
					t.Errorf("%s: volume %s rendered without tls values", at, v.Name)
				}
			}
			for _, container := range pod.spec.Containers {
				for _, m := range container.VolumeMounts {
					if m.Name == "tls" || strings.HasPrefix(m.MountPath, "/etc/analytics/") {
						t.Errorf("%s: mount %s at %s rendered without tls values", at, m.Name, m.MountPath)
					}
				}
				for _, e := range container.Env {
					if caVariable(e.Name) {
						t.Errorf("%s: %s set without tls values", at, e.Name)
					}
				}
			}
		}
	}
	if !jobWithTLS {
		t.Error("no migration Job was rendered with tls values (query-api's ci/tls-values.yaml)")
	}
}

// TestTLSValuesThatCannotWorkAreRefused: contradictory or useless tls values
// fail the render with a message naming the value, instead of a pod that
// cannot start or silently trusts the system store.
func TestTLSValuesThatCannotWorkAreRefused(t *testing.T) {
	helm := helmBinary(t)
	dir := filepath.Join("..", "query-api")
	run(t, helm, "dependency", "update", "--skip-refresh", dir)
	for _, tc := range []struct {
		sets []string
		want string
	}{
		{[]string{"tls.caFiles.postgres=ca.pem"}, "neither tls.existingSecret nor tls.configMap"},
		{[]string{"tls.existingSecret=a", "tls.configMap=b"}, "are both set"},
		{[]string{"tls.existingSecret=a", "tls.mountPath=/etc/analytics"}, "would hide the configuration"},
		{[]string{"tls.existingSecret=a", "tls.mountPath=etc/tls"}, "/tls/mountPath"},
		{[]string{"tls.existingSecret=a", "tls.caFiles.postgres=../ca.pem"}, "/tls/caFiles/postgres"},
		{[]string{"tls.caFiles.rediss=ca.pem"}, "additional properties"},
	} {
		args := []string{"template", "analytics", dir}
		for _, s := range tc.sets {
			args = append(args, "--set", s)
		}
		out, err := exec.Command(helm, args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("--set %v: want a failure saying %q, got %v\n%s", tc.sets, tc.want, err, out)
		}
	}
	// A section the service does not have: the ingest-gateway reads no ClickHouse.
	gateway := filepath.Join("..", "ingest-gateway")
	run(t, helm, "dependency", "update", "--skip-refresh", gateway)
	out, err := exec.Command(helm, "template", "analytics", gateway, "--set", "tls.existingSecret=a", "--set", "tls.caFiles.clickhouse=ca.pem").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "additional properties") {
		t.Errorf("ingest-gateway with tls.caFiles.clickhouse: want the schema's refusal, got %v\n%s", err, out)
	}
}
