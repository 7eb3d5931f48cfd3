using System.CommandLine;
using System.CommandLine.Parsing;
using System.Diagnostics;
using System.Runtime.InteropServices;

namespace FarmPlugins.Cli.Verbs;

/// <summary><c>farm completion</c>: a shell completion script.</summary>
internal sealed class CompletionVerb : Verb
{
    private static readonly string[] Verbs =
        ["plugins", "test", "config", "submit", "render", "jobs", "status", "tasks", "log", "wait", "stop", "restart", "fetch", "delete", "demo",
         "completion", "server", "agent"];

    private static readonly string[] Options =
        ["--plugin", "--set", "--json", "--verbose", "--help", "--frames", "--chunk", "--tiles", "--size", "--antialias", "--threads", "--type",
         "--out", "--name", "--wait", "--request", "--state", "--mine", "--limit", "--task", "--follow", "--load", "--force"];

    private readonly Argument<string> _shell = new("shell") { Description = "bash or zsh." };

    protected override Command Create()
    {
        var command = new Command("completion", Describe("Print a shell completion script.", "source <(farm completion bash)"));
        command.Add(_shell);
        return command;
    }

    protected override Task<int> RunAsync(ParseResult parse, CliSession session, CancellationToken cancellationToken)
    {
        var verbs = string.Join(' ', Verbs);
        var options = string.Join(' ', Options);
        var script = parse.GetValue(_shell) switch
        {
            "bash" => $$"""
                # farm completion for bash: source <(farm completion bash)
                _farm_complete() {
                  local cur=${COMP_WORDS[COMP_CWORD]}
                  if [ "$COMP_CWORD" -eq 1 ]; then
                    COMPREPLY=($(compgen -W "{{verbs}}" -- "$cur"))
                  elif [[ "$cur" == -* ]]; then
                    COMPREPLY=($(compgen -W "{{options}}" -- "$cur"))
                  else
                    COMPREPLY=($(compgen -f -- "$cur"))
                  fi
                }
                complete -F _farm_complete farm ./farm
                """,
            "zsh" => $$"""
                #compdef farm
                # farm completion for zsh: source <(farm completion zsh)
                _farm() {
                  if (( CURRENT == 2 )); then
                    compadd {{verbs}}
                  elif [[ "$PREFIX" == -* ]]; then
                    compadd -- {{options}}
                  else
                    _files
                  fi
                }
                compdef _farm farm
                """,
            var other => throw new UsageException($"No completion for '{other}': use bash or zsh."),
        };
        session.Out.WriteLine(script);
        return Task.FromResult(ExitCodes.Success);
    }
}

/// <summary>Launches a ReferenceFarm executable (server or agent) with the remaining arguments, so the CLI carries no ASP.NET Core.</summary>
internal abstract class LaunchVerb(string name, string project, string assembly, string description, string example) : Verb
{
    private readonly Argument<string[]> _arguments = new("arguments") { Description = "Passed on as they are.", Arity = ArgumentArity.ZeroOrMore };

    protected override Command Create()
    {
        var command = new Command(name, Describe(description, example)) { TreatUnmatchedTokensAsErrors = false };
        command.Add(_arguments);
        return command;
    }

    protected override async Task<int> RunAsync(ParseResult parse, CliSession session, CancellationToken cancellationToken)
    {
        var home = Environment.GetEnvironmentVariable("FARM_HOME") ?? AppContext.BaseDirectory;
        var dll = new[]
        {
            Path.Combine(home, "ReferenceFarm", project, "bin", "Debug", "net10.0", assembly),
            Path.Combine(home, "ReferenceFarm", project, "bin", "Release", "net10.0", assembly),
            Path.Combine(home, "out", "resources", "ReferenceFarm", project, assembly),
        }.FirstOrDefault(File.Exists) ?? throw new UsageException($"The ReferenceFarm {name} is not built: run ./farm from the repository (it builds it), or dotnet build ReferenceFarm/{project}.");
        // The dotnet host that runs this CLI runs the server or agent too (it may not be on PATH).
        var dotnet = Environment.ProcessPath is { } self && Path.GetFileNameWithoutExtension(self) == "dotnet" ? self : "dotnet";
        var info = new ProcessStartInfo(dotnet) { UseShellExecute = false };
        info.ArgumentList.Add(dll);
        foreach (var argument in PassedOn(parse))
        {
            info.ArgumentList.Add(argument);
        }

        using var process = Process.Start(info)!;
        // Ctrl+C in a terminal reaches the child by itself (same process group); a SIGTERM or SIGINT sent to this process alone
        // (a service manager, `kill`) is passed on, so the server or agent stops as it should (an agent drains) instead of
        // being orphaned.
        using var terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, signal =>
        {
            signal.Cancel = true;
            Forward(process, "TERM");
        });
        using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, _ => Forward(process, "INT"));
        try
        {
            await process.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // Interrupted: the child got the signal too; give it its grace period.
            await process.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
            return ExitCodes.Interrupted;
        }

        return process.ExitCode;
    }

    /// <summary>Every token after the verb, in order and as typed: they belong to the executable, not to this CLI.</summary>
    private IEnumerable<string> PassedOn(ParseResult parse)
    {
        var tokens = parse.Tokens;
        var verb = -1;
        for (var i = 0; i < tokens.Count; i++)
        {
            if (tokens[i].Type == TokenType.Command && tokens[i].Value == name)
            {
                verb = i;
                break;
            }
        }

        if (verb < 0)
        {
            return (parse.GetValue(_arguments) ?? []).Concat(parse.UnmatchedTokens);
        }

        return tokens.Skip(verb + 1).Where(t => t.Type != TokenType.DoubleDash).Select(t => t.Value).ToList();
    }

    private static void Forward(Process process, string signal)
    {
        try
        {
            if (process.HasExited)
            {
                return;
            }

            using var kill = Process.Start(new ProcessStartInfo("kill", ["-" + signal, process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])
            {
                UseShellExecute = false,
            });
            kill?.WaitForExit(5000);
        }
        catch (Exception ex) when (ex is InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            // The child is gone, or there is no kill command: nothing more to pass on.
        }
    }
}

/// <summary><c>farm server</c>.</summary>
internal sealed class ServerVerb() : LaunchVerb("server", "Server", "ReferenceFarm.Server.dll",
    "Run the ReferenceFarm queue server (see ReferenceFarm/README.md).", "farm server --listen http://127.0.0.1:7878 --data ~/farm-server");

/// <summary><c>farm agent</c>.</summary>
internal sealed class AgentVerb() : LaunchVerb("agent", "Agent", "ReferenceFarm.Agent.dll",
    "Run a ReferenceFarm render-node agent (see ReferenceFarm/README.md).", "farm agent --server http://127.0.0.1:7878 --token-file ~/farm-server/agent.token");
