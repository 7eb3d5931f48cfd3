using System.CommandLine;
using Command = System.CommandLine.Command;
using System.ComponentModel;
using FarmApi;
using FarmPlugins.Cli.Verbs;
using FarmPlugins.Hosts;

namespace FarmPlugins.Cli;

/// <summary>The <c>farm</c> command line: verbs, global options, and the mapping of errors to exit codes.</summary>
public static class FarmCli
{
    /// <summary>Runs the CLI with the given arguments and writers (the executable passes the console's; tests their own).</summary>
    /// <param name="args">The arguments.</param>
    /// <param name="stdout">Where results go (with <c>--json</c>, only JSON).</param>
    /// <param name="stderr">Where errors, logs and progress go.</param>
    /// <param name="cancellationToken">Cancelled by Ctrl+C.</param>
    /// <returns>The exit code (see <see cref="ExitCodes"/>).</returns>
    public static async Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(args);
        var globals = new GlobalOptions();
        var root = new RootCommand("farm: send renders and commands to any render farm through its FarmPlugins adapter.\n"
            + "Example: farm render samples/scenes/demo.pov --frames 1-24 --tiles 2x2 --wait --out frames");
        globals.AddTo(root);
        Verb[] verbs =
        [
            new PluginsVerb(), new TestVerb(), new ConfigVerb(), new SubmitVerb(), new RenderVerb(), new JobsVerb(), new StatusVerb(),
            new TasksVerb(), new LogVerb(), new WaitVerb(), new StopVerb(), new RestartVerb(), new FetchVerb(), new DeleteVerb(),
            new DemoVerb(), new CompletionVerb(), new ServerVerb(), new AgentVerb(),
        ];
        var outcome = new Outcome();
        foreach (var verb in verbs)
        {
            root.Add(verb.Build(globals, stdout, stderr, outcome));
        }

        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var error in parse.Errors)
            {
                await stderr.WriteLineAsync($"farm: {error.Message}").ConfigureAwait(false);
            }

            await stderr.WriteLineAsync("Run 'farm --help' (or 'farm <verb> --help') for usage.").ConfigureAwait(false);
            return ExitCodes.Usage;
        }

        var code = await parse.InvokeAsync(new InvocationConfiguration { Output = stdout, Error = stderr }, cancellationToken).ConfigureAwait(false);
        return outcome.Code ?? code;
    }

    /// <summary>The exit code for an exception, and the one line to print.</summary>
    /// <param name="exception">What went wrong.</param>
    /// <returns>The exit code and message.</returns>
    public static (int Code, string Message) Classify(Exception exception)
    {
        ArgumentNullException.ThrowIfNull(exception);
        return exception switch
        {
            OperationCanceledException => (ExitCodes.Interrupted, "interrupted"),
            JobNotFoundException notFound => (ExitCodes.Farm, $"{notFound.Message} List the jobs with 'farm jobs'."),
            FarmAuthenticationException => (ExitCodes.Farm, $"{exception.Message} Check the plug-in's credentials with 'farm config'."),
            FarmUnavailableException => (ExitCodes.Farm, $"{exception.Message} Check that the farm is running and reachable, then try again."),
            FarmPluginException => (ExitCodes.Farm, exception.Message),
            SceneException => (ExitCodes.Usage, exception.Message),
            FrameListFormatException => (ExitCodes.Usage, exception.Message),
            ArgumentException or FormatException or FileNotFoundException or DirectoryNotFoundException or UsageException => (ExitCodes.Usage, exception.Message),
            Win32Exception => (ExitCodes.Farm, exception.Message),
            _ => (ExitCodes.Farm, $"{exception.GetType().Name}: {exception.Message}"),
        };
    }
}

/// <summary>A usage error found by a verb (exit code 2).</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>The exit code a verb decided, when it decided one.</summary>
internal sealed class Outcome
{
    public int? Code { get; set; }
}

/// <summary>Options every verb takes.</summary>
internal sealed class GlobalOptions
{
    public Option<string?> Plugin { get; } = new("--plugin", "-p")
    {
        Description = "The plug-in (farm) to use; default: FARM_PLUGIN, else LocalQueue.",
        Recursive = true,
    };

    public Option<string[]> Set { get; } = new("--set")
    {
        Description = "A setting override key=value for the plug-in (repeatable).",
        Recursive = true,
        AllowMultipleArgumentsPerToken = false,
    };

    public Option<bool> Json { get; } = new("--json") { Description = "Print JSON only to stdout.", Recursive = true };

    public Option<bool> Verbose { get; } = new("--verbose", "-v") { Description = "Debug logs and stack traces on stderr.", Recursive = true };

    public void AddTo(Command command)
    {
        command.Add(Plugin);
        command.Add(Set);
        command.Add(Json);
        command.Add(Verbose);
    }
}
