package consul

// The JSON shapes of Consul's answers, as the hashicorp/consul/api client
// decodes them: only the fields hail fills.

// weights is Consul's AgentWeights.
type weights struct {
	Passing int
	Warning int
}

// catalogService is one element of /v1/catalog/service/<s>.
type catalogService struct {
	ID              string
	Node            string
	Address         string
	Datacenter      string
	TaggedAddresses map[string]string
	NodeMeta        map[string]string
	ServiceID       string
	ServiceName     string
	ServiceAddress  string
	ServiceTags     []string
	ServiceMeta     map[string]string
	ServicePort     int
	ServiceWeights  weights
}

// node is Consul's Node.
type node struct {
	ID              string
	Node            string
	Address         string
	Datacenter      string
	TaggedAddresses map[string]string
	Meta            map[string]string
}

// agentService is Consul's AgentService.
type agentService struct {
	ID      string
	Service string
	Tags    []string
	Meta    map[string]string
	Port    int
	Address string
	Weights weights
}

// healthCheck is Consul's HealthCheck.
type healthCheck struct {
	Node        string
	CheckID     string
	Name        string
	Status      string
	Notes       string
	Output      string
	ServiceID   string
	ServiceName string
	ServiceTags []string
	Type        string
}

// serviceEntry is one element of /v1/health/service/<s>.
type serviceEntry struct {
	Node    node
	Service agentService
	Checks  []healthCheck
}
