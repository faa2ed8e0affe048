/**
 * The Kubernetes API, thinly: KnockGrant objects of one namespace listed, watched, created, patched
 * and deleted with the official client. Credentials are the pod's service account in a cluster, or
 * KUBECONFIG outside one (KubeConfig.loadFromDefault). Failures carry the HTTP status, so the caller
 * can tell a conflict or a 410 Gone from an API server that is away.
 */
import { CustomObjectsApi, KubeConfig, PatchStrategy, Watch, setHeaderOptions } from "@kubernetes/client-node";
import { GROUP, PLURAL, VERSION } from "../core/cluster/knock-grant.js";

export interface WatchEvent {
  type: string;
  object: unknown;
}

export interface KubeGrants {
  /** Every object, page by page, and the resourceVersion a watch continues from. */
  list(): Promise<{ items: unknown[]; resourceVersion: string }>;
  /**
   * Watches from `resourceVersion`; `onEnd` runs once when the stream ends or fails. Returns a stop
   * function. The server ends the stream after `timeoutSeconds`.
   */
  watch(resourceVersion: string, timeoutSeconds: number, onEvent: (e: WatchEvent) => void, onEnd: (err: unknown) => void): Promise<() => void>;
  create(body: Record<string, unknown>): Promise<void>;
  /** Merge-patches the spec of an existing object. */
  patchSpec(name: string, spec: unknown): Promise<void>;
  remove(name: string): Promise<void>;
}

const PAGE = 500;

export function kubeGrants(namespace: string, config: KubeConfig = defaultKubeConfig()): KubeGrants {
  const api = config.makeApiClient(CustomObjectsApi);
  const where = { group: GROUP, version: VERSION, namespace, plural: PLURAL };
  const watcher = new Watch(config);
  return {
    async list() {
      const items: unknown[] = [];
      let next: string | undefined;
      let resourceVersion = "";
      do {
        const page = (await api.listNamespacedCustomObject({ ...where, limit: PAGE, ...(next ? { _continue: next } : {}) })) as {
          items?: unknown[];
          metadata?: { resourceVersion?: string; continue?: string };
        };
        items.push(...(page.items ?? []));
        resourceVersion = page.metadata?.resourceVersion ?? resourceVersion;
        next = page.metadata?.continue || undefined;
      } while (next);
      return { items, resourceVersion };
    },
    async watch(resourceVersion, timeoutSeconds, onEvent, onEnd) {
      const path = `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${PLURAL}`;
      const controller = await watcher.watch(
        path,
        { resourceVersion, allowWatchBookmarks: true, timeoutSeconds },
        (type: string, object: unknown) => onEvent({ type, object }),
        onEnd,
      );
      return () => controller.abort();
    },
    async create(body) {
      await api.createNamespacedCustomObject({ ...where, body });
    },
    async patchSpec(name, spec) {
      await api.patchNamespacedCustomObject({ ...where, name, body: { spec } }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch));
    },
    async remove(name) {
      await api.deleteNamespacedCustomObject({ ...where, name });
    },
  };
}

/**
 * KUBECONFIG, ~/.kube/config or the pod's service account, as kubectl looks. With none of them the
 * client would quietly fall back to http://localhost:8080 and retry there forever: refused instead.
 */
function defaultKubeConfig(): KubeConfig {
  const config = new KubeConfig();
  config.loadFromDefault();
  const server = config.getCurrentCluster()?.server;
  if (!server || server === "http://localhost:8080") {
    throw new Error("no Kubernetes credentials: not in a pod with a service account token, and no KUBECONFIG or ~/.kube/config");
  }
  return config;
}
