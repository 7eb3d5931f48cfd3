using Xunit;

namespace FarmPlugins.LocalQueue.Tests;

public sealed class LineSplitterTests
{
    [Fact]
    public void Lines_SpanningReads_CrLf_AndAnUnterminatedLastLine_ComeOutWhole()
    {
        var lines = new List<string>();
        var splitter = new LineSplitter(lines.Add);

        splitter.Append("first li");
        splitter.Append("ne\nsecond\r");
        splitter.Append("\n\nthird\r\nlast without newline");
        Assert.Equal(["first line", "second", "", "third"], lines);

        splitter.Flush();
        Assert.Equal(["first line", "second", "", "third", "last without newline"], lines);
        splitter.Flush();
        Assert.Equal(5, lines.Count);
    }
}
