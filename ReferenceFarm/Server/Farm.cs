using System.Collections.Concurrent;
using FarmApi.Hashing;
using Grpc.Core;
using ReferenceFarm.Protocol;

namespace ReferenceFarm.Server;

/// <summary>What the services share: options, store, logs, blobs, the agents' installations and the work signal.</summary>
public sealed class Farm
{
    private TaskCompletionSource _work = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Makes the shared state.</summary>
    /// <param name="options">The options.</param>
    /// <param name="store">The store.</param>
    /// <param name="time">The clock.</param>
    public Farm(ServerOptions options, Store store, TimeProvider time)
    {
        Options = options;
        Store = store;
        Time = time;
        Logs = new LogStore(Path.Combine(options.DataDirectory, "logs"));
        Blobs = new FileBlobStore(Path.Combine(options.DataDirectory, "blobs"));
    }

    /// <summary>The options.</summary>
    public ServerOptions Options { get; }

    /// <summary>The durable state.</summary>
    public Store Store { get; }

    /// <summary>The clock.</summary>
    public TimeProvider Time { get; }

    /// <summary>The logs.</summary>
    public LogStore Logs { get; }

    /// <summary>The blob store.</summary>
    public FileBlobStore Blobs { get; }

    /// <summary>What each agent advertised, by agent name; the most recent call wins.</summary>
    public ConcurrentDictionary<string, (DateTimeOffset Seen, Installation[] Hosts)> Agents { get; } = new(StringComparer.Ordinal);

    /// <summary>Held while blobs are removed, and while present blobs are marked as just seen (see <see cref="BlobCollector"/>).</summary>
    public SemaphoreSlim BlobGate { get; } = new(1, 1);

    /// <summary>Set once the server listens and running leases got their restart grace: lapsed leases are looked for only then.</summary>
    public TaskCompletionSource Listening { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Wakes agents waiting for work.</summary>
    public void SignalWork() => Interlocked.Exchange(ref _work, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();

    /// <summary>A task that completes at the next <see cref="SignalWork"/>.</summary>
    public Task WorkSignal => Volatile.Read(ref _work).Task;

    /// <summary>Reads the bearer token of a call and checks its kind.</summary>
    /// <param name="context">The call.</param>
    /// <param name="kind">"client" or "agent".</param>
    /// <returns>The caller.</returns>
    /// <exception cref="RpcException">Unauthenticated: no token, an unknown one, or one of the other kind.</exception>
    public async Task<Caller> AuthenticateAsync(ServerCallContext context, string? kind)
    {
        var header = context.RequestHeaders.GetValue("authorization");
        if (header is null || !header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) || header.Length <= 7)
        {
            throw new RpcException(new Status(StatusCode.Unauthenticated, "A bearer token is required (authorization: Bearer <token>)."));
        }

        var caller = await Store.AuthenticateAsync(header[7..].Trim(), context.CancellationToken).ConfigureAwait(false)
            ?? throw new RpcException(new Status(StatusCode.Unauthenticated, "The token is not valid (unknown or revoked)."));
        if (kind is not null && caller.Kind != kind)
        {
            throw new RpcException(new Status(StatusCode.Unauthenticated,
                $"This call needs a {kind} token; an {caller.Kind} token cannot make it."));
        }

        return caller;
    }

    /// <summary>Milliseconds since the Unix epoch, now.</summary>
    /// <returns>The time.</returns>
    public long NowMs() => Time.GetUtcNow().ToUnixTimeMilliseconds();
}
