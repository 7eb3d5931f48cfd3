using Xunit;

namespace FarmApi.Tests.Frames;

public class FrameListTests
{
    [Theory]
    [InlineData("1-5", new[] { 1, 2, 3, 4, 5 })]
    [InlineData("1-10x2", new[] { 1, 3, 5, 7, 9 })]
    [InlineData("1-10:3", new[] { 1, 4, 7, 10 })]
    [InlineData("5-1", new[] { 5, 4, 3, 2, 1 })]
    [InlineData("10-1x4", new[] { 10, 6, 2 })]
    [InlineData("1-3,20,30-40x5", new[] { 1, 2, 3, 20, 30, 35, 40 })]
    [InlineData("-3--1", new[] { -3, -2, -1 })]
    [InlineData("-2-2", new[] { -2, -1, 0, 1, 2 })]
    [InlineData(" 1 - 3 , 7 ", new[] { 1, 2, 3, 7 })]
    [InlineData("3,1-4,2", new[] { 3, 1, 2, 4 })]
    [InlineData("7", new[] { 7 })]
    public void Parse_ReturnsFramesInOrderWithoutDuplicates(string text, int[] expected)
    {
        Assert.Equal(expected, FrameList.Parse(text));
    }

    [Theory]
    [InlineData("1-x", "x", 3)]
    [InlineData("1-10,,12", ",", 6)]
    [InlineData("", "", 1)]
    [InlineData("1-10x0", "0", 6)]
    [InlineData("1 2", "2", 3)]
    [InlineData("abc", "abc", 1)]
    [InlineData("1-99999999999", "99999999999", 3)]
    [InlineData("1-5,", "<end>", 5)]
    public void Parse_NamesTheOffendingTokenAndPosition(string text, string token, int position)
    {
        var error = Assert.Throws<FrameListFormatException>(() => FrameList.Parse(text));
        Assert.Equal(token, error.Token);
        Assert.Equal(position, error.Position);
        Assert.Contains($"position {position}", error.Message);
        Assert.IsAssignableFrom<FormatException>(error);
    }

    [Fact]
    public void Parse_RefusesMoreThanAMillionFrames()
    {
        var error = Assert.Throws<FrameListFormatException>(() => FrameList.Parse("1-1000001"));
        Assert.Contains("1,000,000", error.Message);
        Assert.Equal(FrameList.MaxFrames, FrameList.Parse("1-1000000").Count);
        Assert.Throws<FrameListFormatException>(() => FrameList.Parse("1-600000,1-600000"));
    }

    [Fact]
    public void Chunk_GroupsConsecutiveFrames()
    {
        var chunks = FrameList.Parse("1-7").Chunk(3);
        Assert.Equal(new[] { new[] { 1, 2, 3 }, new[] { 4, 5, 6 }, new[] { 7 } }, chunks.Select(c => c.ToArray()));
        Assert.Throws<ArgumentOutOfRangeException>(() => FrameList.Parse("1").Chunk(0));
    }

    [Theory]
    [InlineData("1-10,20,30-40x5", "1-10,20,30-40x5")]
    [InlineData("10-1", "10-1")]
    [InlineData("1,2", "1,2")]
    [InlineData("1,3,5,6", "1-5x2,6")]
    public void ToString_IsCompactAndRoundTrips(string text, string expected)
    {
        var list = FrameList.Parse(text);
        Assert.Equal(expected, list.ToString());
        Assert.Equal(list, FrameList.Parse(list.ToString()));
    }

    [Fact]
    public void TryParse_ReportsWithoutThrowing()
    {
        Assert.False(FrameList.TryParse("1-x", out var none, out var error));
        Assert.Null(none);
        Assert.Contains("'x'", error);
        Assert.True(FrameList.TryParse("4-6", out var list, out _));
        Assert.Equal(3, list!.Count);
    }
}
