using System.CommandLine;
using Command = System.CommandLine.Command;
using FarmApi;

namespace FarmPlugins.Cli.Verbs;

/// <summary>One verb of the <c>farm</c> command: its options and what it does.</summary>
internal abstract class Verb
{
    private GlobalOptions _globals = null!;
    private TextWriter _stdout = null!;
    private TextWriter _stderr = null!;
    private Outcome _outcome = null!;

    public Command Build(GlobalOptions globals, TextWriter stdout, TextWriter stderr, Outcome outcome)
    {
        _globals = globals;
        _stdout = stdout;
        _stderr = stderr;
        _outcome = outcome;
        var command = Create();
        command.SetAction(async (parse, cancellationToken) =>
        {
            var code = await ExecuteAsync(parse, cancellationToken).ConfigureAwait(false);
            _outcome.Code = code;
            return code;
        });
        return command;
    }

    /// <summary>Makes the command with its arguments and options (help text with an example).</summary>
    protected abstract Command Create();

    /// <summary>Does the verb's work; returns the exit code.</summary>
    protected abstract Task<int> RunAsync(ParseResult parse, CliSession session, CancellationToken cancellationToken);

    private async Task<int> ExecuteAsync(ParseResult parse, CancellationToken cancellationToken)
    {
        CliSession? session = null;
        try
        {
            session = new CliSession(parse, _globals, _stdout, _stderr);
            return await RunAsync(parse, session, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            var (code, message) = FarmCli.Classify(ex);
            if (code == ExitCodes.Interrupted)
            {
                return code;
            }

            await _stderr.WriteLineAsync($"farm: {message}").ConfigureAwait(false);
            if (session?.Verbose == true || parse.GetValue(_globals.Verbose))
            {
                await _stderr.WriteLineAsync(ex.ToString()).ConfigureAwait(false);
            }

            return code;
        }
        finally
        {
            if (session is not null)
            {
                await session.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>The description with an example line.</summary>
    protected static string Describe(string what, string example) => $"{what}\nExample: {example}";

    /// <summary>A job id argument.</summary>
    protected static Argument<string> JobIdArgument() => new("id") { Description = "The job id (see 'farm jobs')." };

    /// <summary>The exit code of a finished job: 0 completed, 1 failed or cancelled.</summary>
    protected static int ExitCodeOf(Job job) => job.State == JobState.Completed ? ExitCodes.Success : ExitCodes.JobFailed;
}
