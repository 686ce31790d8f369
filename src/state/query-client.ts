import { QueryClient } from '@tanstack/react-query';

/** A session's query client (queries.ts): results never go stale (their key names all they depend on), failures are not retried. */
export function createQueryClient(): QueryClient {
  return new QueryClient({
    defaultOptions: {
      // Computed here, not fetched: runs offline too. Kept in memory 30 min after the last use.
      queries: { staleTime: Infinity, gcTime: 30 * 60_000, retry: false, networkMode: 'always' },
      mutations: { networkMode: 'always' },
    },
  });
}
