"""The API server's CPU per request on ScimUsers, by kind: create, GET at a resourceVersion,
finalizer PATCH, status PATCH (the operator's status, and the ceiling's smaller one).

Run by bench/api_cost.sh, which starts the control plane and says where the results go.
usage: api_cost.py N   (N ScimUsers; env NS, PHASES, WATCHERS, LABEL; KUBE_* from the control
plane's env). Prints one JSON line per phase: the API server's and etcd's CPU seconds
(utime+stime from /proc) over the phase, per request, with 16 requests in flight and WATCHERS
watches of every ScimUser open (the operator's and the load client's)."""
import json, os, sys, time, threading, concurrent.futures as cf, requests, urllib3
urllib3.disable_warnings()
URL=os.environ["KUBE_APISERVER_URL"]; TOK=os.environ["KUBE_ADMIN_TOKEN"]; PID=int(os.environ["KUBE_APISERVER_PID"])
N=int(sys.argv[1]) if len(sys.argv)>1 else 3000
NS=os.environ.get("NS","cost"); base=f"{URL}/apis/scim.dev/v1alpha1/namespaces/{NS}/scimusers"
S=threading.local()
def sess():
    if not hasattr(S,"s"):
        S.s=requests.Session(); S.s.verify=os.environ["KUBE_CA_FILE"]; S.s.headers["Authorization"]=f"Bearer {TOK}"
    return S.s
def cpu(pid):
    f=open(f"/proc/{pid}/stat").read().split(")")[1].split()
    return (int(f[11])+int(f[12]))/os.sysconf("SC_CLK_TCK")
ETCD=int(os.environ["ETCD_PID"])
def phase(name, fn, items):
    a,e=cpu(PID),cpu(ETCD); t=time.time()
    with cf.ThreadPoolExecutor(16) as ex:
        res=list(ex.map(fn, items))
    bad=[r for r in res if r not in (200,201)]
    da,de=cpu(PID)-a,cpu(ETCD)-e
    print(json.dumps({"label":os.environ.get("LABEL",""),"phase":name,"n":len(items),"apiserver_cpu_s":round(da,2),"ms_per_req":round(1000*da/len(items),3),"etcd_cpu_s":round(de,2),"wall_s":round(time.time()-t,1),"errors":len(bad),"codes":sorted(set(bad))[:5]}),flush=True)
rv={}
def create(i):
    body={"apiVersion":"scim.dev/v1alpha1","kind":"ScimUser","metadata":{"name":f"u{i:05d}"},
          "spec":{"userName":f"bench-{i:05d}@example.com","displayName":f"Bench User {i}","title":"Engineer"}}
    r=sess().post(base,json=body); 
    if r.ok: rv[i]=r.json()["metadata"]["resourceVersion"]; fz[i]=r.json()["metadata"].get("finalizers")
    return r.status_code
fz={}
def get(i):
    r=sess().get(f"{base}/u{i:05d}",params={"resourceVersion":rv[i]}); return r.status_code
def fin(i):
    if fz.get(i): return 200
    p={"metadata":{"finalizers":["scim.dev/cleanup"],"resourceVersion":rv[i]}}
    r=sess().patch(f"{base}/u{i:05d}",data=json.dumps(p),headers={"Content-Type":"application/merge-patch+json"}); return r.status_code
def status(i):
    st={"status":{"observedGeneration":1,"scimId":f"0193a7b2-{i:05d}-7000-8000-00000000abcd","effectiveRoles":["Standard"],"grantedRoles":[],
        "conditions":[{"type":"Ready","status":"True","reason":"Provisioned","message":f"provisioned as SCIM user 0193a7b2-{i:05d}","observedGeneration":1,"lastTransitionTime":"2026-12-06T10:00:01Z"}],
        "targets":[{"target":"ClusterScimTarget/default","remoteId":f"0193a7b2-{i:05d}-7000-8000-00000000abcd","ready":True,"reason":"Provisioned","message":f"provisioned as 0193a7b2-{i:05d}","observedGeneration":1,"lastSync":"2026-12-06T10:00:02Z"}]}}
    r=sess().patch(f"{base}/u{i:05d}/status",data=json.dumps(st),headers={"Content-Type":"application/merge-patch+json"}); return r.status_code
def status_small(i):
    st={"status":{"observedGeneration":1,"scimId":f"ceiling-{i}","conditions":[{"type":"Ready","status":"True","reason":"Provisioned","message":"provisioned as SCIM user (ceiling)","observedGeneration":1,"lastTransitionTime":"2026-12-06T10:00:01Z"}]}}
    r=sess().patch(f"{base}/u{i:05d}/status",data=json.dumps(st),headers={"Content-Type":"application/merge-patch+json"}); return r.status_code
def watcher():
    s=requests.Session(); s.verify=os.environ["KUBE_CA_FILE"]; s.headers["Authorization"]=f"Bearer {TOK}"
    with s.get(f"{URL}/apis/scim.dev/v1alpha1/scimusers",params={"watch":"true","allowWatchBookmarks":"true"},stream=True) as r:
        for _ in r.iter_lines(): pass
s=sess(); s.post(f"{URL}/api/v1/namespaces",json={"metadata":{"name":NS}})
for w in range(int(os.environ.get("WATCHERS","2"))): threading.Thread(target=watcher,daemon=True).start()
time.sleep(1)
items=list(range(N))
phase("create",create,items)
print(json.dumps({"label":os.environ.get("LABEL",""),"finalizer_at_create":sum(1 for v in fz.values() if v)}),flush=True)
for name in os.environ.get("PHASES","get_at_rv,finalizer_patch,status_patch").split(","):
    time.sleep(2)
    phase(name,{"get_at_rv":get,"finalizer_patch":fin,"status_patch":status,"status_small":status_small}[name],items)
