using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Serialization;
using FarmApi;
using FarmApi.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace FarmPlugins.Cli;

/// <summary>One invocation: the parsed globals, the writers, and the plug-in, loaded on first use.</summary>
internal sealed class CliSession : IAsyncDisposable
{
    public static readonly JsonSerializerOptions JsonOptions = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        Converters = { new JsonStringEnumConverter() },
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    private static readonly JsonSerializerOptions JsonLineOptions = new(JsonOptions) { WriteIndented = false };

    private FarmPluginManager? _manager;
    private BaseFarmPlugin? _plugin;

    public CliSession(ParseResult parse, GlobalOptions globals, TextWriter stdout, TextWriter stderr)
    {
        Out = stdout;
        Err = stderr;
        Json = parse.GetValue(globals.Json);
        Verbose = parse.GetValue(globals.Verbose);
        PluginName = parse.GetValue(globals.Plugin) ?? NonEmpty(Environment.GetEnvironmentVariable("FARM_PLUGIN")) ?? "LocalQueue";
        Overrides = ParseOverrides(parse.GetValue(globals.Set) ?? []);
        LoggerFactory = Verbose ? new StderrLoggerFactory(stderr, LogLevel.Trace) : new StderrLoggerFactory(stderr, LogLevel.Warning);
    }

    public TextWriter Out { get; }

    public TextWriter Err { get; }

    public bool Json { get; }

    public bool Verbose { get; }

    public string PluginName { get; }

    public IReadOnlyDictionary<string, string> Overrides { get; }

    public ILoggerFactory LoggerFactory { get; }

    public FarmPluginManager Manager => _manager ??= new FarmPluginManager(new FarmPluginManagerOptions { LoggerFactory = LoggerFactory });

    public async Task<BaseFarmPlugin> PluginAsync(CancellationToken cancellationToken) =>
        _plugin ??= await Manager.LoadAsync(PluginName, Overrides, cancellationToken).ConfigureAwait(false);

    public void WriteJson<T>(T value) => Out.WriteLine(JsonSerializer.Serialize(value, JsonOptions));

    public void WriteJsonLine<T>(T value) => Out.WriteLine(JsonSerializer.Serialize(value, JsonLineOptions));

    /// <summary>Writes a line for people: to stdout normally, to stderr with --json (stdout then holds JSON only).</summary>
    public void Say(string line)
    {
        (Json ? Err : Out).WriteLine(line);
    }

    public async ValueTask DisposeAsync()
    {
        if (_plugin is not null)
        {
            await _plugin.DisposeAsync().ConfigureAwait(false);
        }

        if (_manager is not null)
        {
            await _manager.DisposeAsync().ConfigureAwait(false);
        }

        LoggerFactory.Dispose();
    }

    private static string? NonEmpty(string? value) => string.IsNullOrWhiteSpace(value) ? null : value;

    private static Dictionary<string, string> ParseOverrides(string[] pairs)
    {
        var result = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var pair in pairs)
        {
            var equals = pair.IndexOf('=', StringComparison.Ordinal);
            if (equals <= 0)
            {
                throw new UsageException($"--set '{pair}' is not key=value.");
            }

            result[pair[..equals].Trim()] = pair[(equals + 1)..];
        }

        return result;
    }
}

/// <summary>A small logger that writes to stderr (logs never reach stdout, where results and JSON go).</summary>
internal sealed class StderrLoggerFactory(TextWriter writer, LogLevel minimum) : ILoggerFactory
{
    public void AddProvider(ILoggerProvider provider)
    {
    }

    public ILogger CreateLogger(string categoryName) => minimum == LogLevel.None ? NullLogger.Instance : new StderrLogger(writer, minimum, categoryName);

    public void Dispose()
    {
    }

    private sealed class StderrLogger(TextWriter writer, LogLevel minimum, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= minimum && logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel))
            {
                return;
            }

            var text = $"{logLevel.ToString().ToLowerInvariant()}: {category}: {formatter(state, exception)}";
            lock (writer)
            {
                writer.WriteLine(text);
            }
        }
    }
}
