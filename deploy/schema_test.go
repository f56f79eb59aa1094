package deploy_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// schemaNode is the part of JSON Schema that values.schema.json uses.
type schemaNode struct {
	Type                 any                    `json:"type"`
	Ref                  string                 `json:"$ref"`
	Properties           map[string]*schemaNode `json:"properties"`
	AdditionalProperties any                    `json:"additionalProperties"`
	Items                *schemaNode            `json:"items"`
	Enum                 []any                  `json:"enum"`
	Minimum              *float64               `json:"minimum"`
	Maximum              *float64               `json:"maximum"`
	Definitions          map[string]*schemaNode `json:"definitions"`
}

// TestDeployHelmValuesSchema holds values.yaml to values.schema.json, as
// helm does on install: every key of the defaults is declared, with its
// type; a misspelt key, a number for a list, an unknown enum value fail.
func TestDeployHelmValuesSchema(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var root schemaNode
	if err := json.Unmarshal(raw, &root); err != nil {
		t.Fatalf("values.schema.json: %v", err)
	}
	data, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values any
	if err := yaml.Unmarshal(data, &values); err != nil {
		t.Fatal(err)
	}
	if errs := validate(&root, &root, values, "values"); len(errs) > 0 {
		t.Errorf("values.yaml against values.schema.json:\n%s", strings.Join(errs, "\n"))
	}
	// The schema catches what it must: one mistake each.
	for name, bad := range map[string]string{
		"a misspelt key":         "replicaCount: 1\nnetworkPolicy: {ingres: {cidrs: [10.0.0.0/8]}}\n",
		"a string for a list":    "networkPolicy: {ingress: {namespaces: mattermost}}\n",
		"a port out of range":    "service: {port: 70000}\n",
		"an unknown pull policy": "image: {pullPolicy: Sometimes}\n",
	} {
		var v any
		if err := yaml.Unmarshal([]byte(bad), &v); err != nil {
			t.Fatal(err)
		}
		if errs := validate(&root, &root, v, "values"); len(errs) == 0 {
			t.Errorf("%s passes the schema: %s", name, bad)
		}
	}
}

// validate checks v against s (refs resolved in root) and lists what fails.
func validate(root, s *schemaNode, v any, path string) []string {
	if s.Ref != "" {
		name := strings.TrimPrefix(s.Ref, "#/definitions/")
		def, ok := root.Definitions[name]
		if !ok {
			return []string{path + ": unknown $ref " + s.Ref}
		}
		return validate(root, def, v, path)
	}
	var errs []string
	if s.Type != nil && !typeOK(s.Type, v) {
		return []string{path + ": not of type " + strings.Trim(strings.ReplaceAll(jsonString(s.Type), `"`, ""), "[]")}
	}
	if len(s.Enum) > 0 {
		found := false
		for _, e := range s.Enum {
			found = found || e == v
		}
		if !found {
			errs = append(errs, path+": not one of "+jsonString(s.Enum))
		}
	}
	if n, ok := number(v); ok {
		if s.Minimum != nil && n < *s.Minimum || s.Maximum != nil && n > *s.Maximum {
			errs = append(errs, path+": out of range")
		}
	}
	switch v := v.(type) {
	case map[string]any:
		for k, child := range v {
			if p, ok := s.Properties[k]; ok {
				errs = append(errs, validate(root, p, child, path+"."+k)...)
			} else if s.AdditionalProperties == false {
				errs = append(errs, path+"."+k+": not declared in the schema")
			} else if ap, ok := s.AdditionalProperties.(map[string]any); ok {
				b, _ := json.Marshal(ap)
				var sub schemaNode
				json.Unmarshal(b, &sub)
				errs = append(errs, validate(root, &sub, child, path+"."+k)...)
			}
		}
	case []any:
		if s.Items != nil {
			for i, item := range v {
				errs = append(errs, validate(root, s.Items, item, path+"["+jsonString(i)+"]")...)
			}
		}
	}
	return errs
}

func typeOK(t, v any) bool {
	switch t := t.(type) {
	case string:
		return typeIs(t, v)
	case []any:
		for _, one := range t {
			if s, _ := one.(string); typeIs(s, v) {
				return true
			}
		}
	}
	return false
}

func typeIs(t string, v any) bool {
	switch t {
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "integer":
		_, ok := v.(int)
		return ok
	case "number":
		_, ok := number(v)
		return ok
	}
	return false
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestDeployDashboardCountsEachNotificationOnce: a spooled notification is
// counted twice in pushrelay_notifications_total (spooled, then its fate),
// so a panel that adds outcomes together must leave spooled out; only a
// panel split by outcome may show it.
func TestDeployDashboardCountsEachNotificationOnce(t *testing.T) {
	raw, err := os.ReadFile("grafana/pushrelay-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			e := target.Expr
			if !strings.Contains(e, "pushrelay_notifications_total{") || strings.Contains(e, "by (outcome") ||
				strings.Contains(e, `outcome="`) || strings.Contains(e, `outcome=~"`) {
				continue
			}
			checked++
			if !strings.Contains(e, `outcome!="spooled"`) {
				t.Errorf("panel %q adds outcomes together with spooled among them: %s", p.Title, e)
			}
		}
	}
	if checked == 0 {
		t.Error("no panel adds up pushrelay_notifications_total; the check checked nothing")
	}
}
