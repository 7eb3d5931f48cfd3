using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using ReferenceFarm.Agent;

// `agent --server URL --token-file FILE [--hosts povray,blender] [--work DIR] ...`: the token never comes from the command line.
AgentOptions options;
try
{
    options = AgentOptions.Parse(args, Environment.GetEnvironmentVariable);
}
catch (ArgumentException ex)
{
    await Console.Error.WriteLineAsync($"error: {ex.Message}\n{AgentOptions.Usage}").ConfigureAwait(false);
    return 2;
}

// One agent per work folder: two would lay out, clean and recover each other's job folders.
Directory.CreateDirectory(options.WorkDirectory);
FileStream workLock;
try
{
    workLock = new FileStream(Path.Combine(options.WorkDirectory, "agent.lock"), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
}
catch (IOException)
{
    await Console.Error.WriteLineAsync($"error: another agent is using the work folder {options.WorkDirectory}; give this one its own --work DIR").ConfigureAwait(false);
    return 1;
}

await using var heldLock = workLock.ConfigureAwait(false);

// Each slot runs its command to the end on a pool thread it blocks meanwhile: the pool may start that many more without delay,
// so heartbeats and reports never wait for its starvation detection.
ThreadPool.GetMinThreads(out var workers, out var completionPorts);
ThreadPool.SetMinThreads(workers + options.Slots + 2, completionPorts);

// The token is not inherited by the tasks this agent runs.
Environment.SetEnvironmentVariable("FARM_AGENT_TOKEN", null);
var builder = Host.CreateApplicationBuilder([]);
builder.Logging.ClearProviders();
builder.Logging.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; });
builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
builder.Logging.AddFilter("Grpc", LogLevel.Warning);
builder.Services.AddSingleton(options);
builder.Services.AddHostedService<AgentWorker>();
builder.Services.Configure<HostOptions>(h => h.ShutdownTimeout = options.DrainGrace + TimeSpan.FromSeconds(15));
using var host = builder.Build();
await host.RunAsync().ConfigureAwait(false);
return 0;
