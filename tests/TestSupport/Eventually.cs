using System.Diagnostics;

namespace FarmPlugins.TestSupport;

/// <summary>Waits with a timeout: every wait in a test ends.</summary>
public static class Eventually
{
    /// <summary>Polls <paramref name="condition"/> until it holds; fails with <paramref name="what"/> after <paramref name="timeout"/>.</summary>
    public static async Task WaitAsync(Func<Task<bool>> condition, TimeSpan timeout, string what, TimeSpan? poll = null)
    {
        var watch = Stopwatch.StartNew();
        while (true)
        {
            if (await condition().ConfigureAwait(false))
            {
                return;
            }

            if (watch.Elapsed > timeout)
            {
                throw new TimeoutException($"Timed out after {timeout.TotalSeconds:0.#} s waiting for {what}.");
            }

            await Task.Delay(poll ?? TimeSpan.FromMilliseconds(50)).ConfigureAwait(false);
        }
    }

    public static Task WaitAsync(Func<bool> condition, TimeSpan timeout, string what, TimeSpan? poll = null) =>
        WaitAsync(() => Task.FromResult(condition()), timeout, what, poll);
}
