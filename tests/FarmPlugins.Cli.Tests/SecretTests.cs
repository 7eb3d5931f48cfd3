using FarmPlugins.TestSupport;
using Xunit;

namespace FarmPlugins.Cli.Tests;

/// <summary>
/// A secret setting never leaks: with --verbose (Trace logs), after a call that fails, a unique secret value is absent
/// from stdout, stderr, the exception message, every file under the data directory and every process's command line.
/// </summary>
[Collection(CliCollection.Name)]
public sealed class SecretTests(CliFixture farm)
{
    private static bool ProcessCommandLinesContain(string secret)
    {
        foreach (var dir in Directory.GetDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out _))
            {
                continue;
            }

            try
            {
                if (File.ReadAllText(Path.Combine(dir, "cmdline")).Contains(secret, StringComparison.Ordinal))
                {
                    return true;
                }
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }
        }

        return false;
    }

    private bool DataFilesContain(string secret) =>
        Directory.EnumerateFiles(farm.DataDirectory, "*", SearchOption.AllDirectories).Any(f =>
        {
            try
            {
                return File.ReadAllText(f).Contains(secret, StringComparison.Ordinal);
            }
            catch (IOException)
            {
                return false;
            }
        });

    [Fact]
    public async Task SecretToken_NeverAppears_InOutputLogsFilesOrCommandLines_AfterAFailedCall()
    {
        var secret = "s3cr3t-" + Guid.NewGuid().ToString("N");
        var port = FreePort.Get();
        var environment = new Dictionary<string, string> { ["FARM_REFERENCEFARM_TOKEN"] = secret };

        // A real process: the token from the environment, the farm unreachable, every log at Trace.
        var process = await farm.RunProcessAsync(["jobs", "--plugin", "ReferenceFarm", "--set", $"Address=http://127.0.0.1:{port}", "--verbose"],
            environment: environment);
        Assert.True(process.Code == 3, process.ToString());
        Assert.DoesNotContain(secret, process.Stdout);
        Assert.DoesNotContain(secret, process.Stderr);

        // In process: the token on --set, the same failure, and `config` shows it masked.
        var inProcess = await farm.RunAsync("status", "rf-1", "--plugin", "ReferenceFarm", "--set", $"Address=http://127.0.0.1:{port}",
            "--set", $"Token={secret}", "--verbose");
        Assert.True(inProcess.Code == 3, inProcess.ToString());
        Assert.DoesNotContain(secret, inProcess.Stdout);
        Assert.DoesNotContain(secret, inProcess.Stderr);
        var config = await farm.RunAsync("config", "--plugin", "ReferenceFarm", "--set", $"Token={secret}", "--json", "--verbose");
        Assert.DoesNotContain(secret, config.Stdout);
        Assert.DoesNotContain(secret, config.Stderr);
        Assert.Contains("***", config.Stdout);

        Assert.False(DataFilesContain(secret), "a file under the data directory holds the secret");
        Assert.False(ProcessCommandLinesContain(secret), "a process command line holds the secret");
    }

    [Fact]
    public async Task FailedJobsLog_DoesNotCarryASecretSetting_OfTheLocalQueue()
    {
        // LocalQueue has no secret of its own: an unknown setting passed with --set is not secret, but a value that
        // merely looks like a token must not be echoed in errors either when the verb fails on usage.
        var secret = "tok-" + Guid.NewGuid().ToString("N");
        var result = await farm.RunAsync("jobs", "--set", $"Token={secret}", "--state", "Nope", "--json");

        Assert.Equal(2, result.Code);
        Assert.DoesNotContain(secret, result.Stderr);
        Assert.Empty(result.Stdout);
    }
}
